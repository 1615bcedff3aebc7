//! `loupe plugins list|check`: what is installed, and whether a file would load.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::run::DEFAULT_PLUGINS_DIR;
use crate::plugin::{LoadedPlugin, PluginEngine, find_plugins};

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List the plugins in a directory with their versions, API versions and parameters.
    List {
        /// Directory of plugin .wasm files.
        #[arg(long, default_value = DEFAULT_PLUGINS_DIR, env = "LOUPE_PLUGINS")]
        plugins: PathBuf,
        /// One JSON object per plugin instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a plugin file (component, API version, manifest, parameter schema) without running it.
    Check {
        file: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn describe(p: &LoadedPlugin, json: bool) -> String {
    if json {
        return serde_json::json!({
            "file": p.path.display().to_string(),
            "sha256": p.sha256,
            "api_version": p.api_version,
            "manifest": p.manifest,
        })
        .to_string();
    }
    let m = &p.manifest;
    let mut out = format!(
        "{} {} (method {}, loupe:plugin@{}) — {}\n  file: {}\n  {}\n",
        m.name,
        m.version,
        m.method,
        p.api_version,
        if p.from_cache {
            format!(
                "cached, loaded in {:.1} ms",
                p.load_time.as_secs_f64() * 1e3
            )
        } else {
            format!("compiled in {:.0} ms", p.load_time.as_secs_f64() * 1e3)
        },
        p.path.display(),
        m.description
    );
    for param in &m.params {
        let default = param
            .default
            .as_ref()
            .map_or("required".to_string(), |d| format!("default {d}"));
        out.push_str(&format!(
            "    {} ({}, {default}): {}\n",
            param.name, param.ty, param.help
        ));
    }
    out
}

pub fn run(cmd: PluginsCommand) -> Result<()> {
    let engine = PluginEngine::new()?;
    match cmd {
        PluginsCommand::List { plugins, json } => {
            let files = find_plugins(&plugins)?;
            if files.is_empty() && !json {
                println!(
                    "no plugins in {}; build them with scripts/build-plugins.sh",
                    plugins.display()
                );
            }
            let mut broken = 0;
            for file in files {
                match engine.load(&file) {
                    Ok(p) => print!("{}{}", describe(&p, json), if json { "\n" } else { "" }),
                    Err(e) => {
                        broken += 1;
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({ "file": file.display().to_string(), "error": e.to_string() })
                            );
                        } else {
                            println!("BROKEN {e}\n");
                        }
                    }
                }
            }
            if broken > 0 && !json {
                eprintln!("loupe: {broken} plugin file(s) could not be loaded (see above)");
            }
            Ok(())
        }
        PluginsCommand::Check { file, json } => match engine.load(&file) {
            Ok(p) => {
                print!("{}", describe(&p, json));
                if json {
                    println!();
                } else {
                    println!("ok: {} loads and its manifest is sound", file.display());
                }
                Ok(())
            }
            Err(e) => bail!("{e}"),
        },
    }
}
