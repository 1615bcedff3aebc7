//! `loupe plugins list|check`: what is installed, and whether a file would load.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::plugin::{LoadedPlugin, PluginEngine, PluginRegistry, RegistryEvent, find_plugins};
use crate::text::{MAX_SHOWN_NAME_CHARS, shown, shown_capped, terminal_json};

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List the plugins in a directory with their versions, API versions and parameters.
    List {
        /// Directory of plugin .wasm files [default: plugins/dist under the current folder or one
        /// above it, else in the checkout loupe was built in].
        #[arg(long, env = "LOUPE_PLUGINS")]
        plugins: Option<PathBuf>,
        /// One JSON object per plugin instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a plugin file (component, API version, manifest, parameter schema) without running it.
    Check {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A plugin's listing. Everything in a manifest is the plugin's own text: escaped, one line each.
fn describe(p: &LoadedPlugin, json: bool) -> String {
    if json {
        return terminal_json(&serde_json::json!({
            "file": p.path.display().to_string(),
            "sha256": p.sha256,
            "api_version": p.api_version,
            "manifest": p.manifest,
        }));
    }
    let m = &p.manifest;
    let name = |s: &str| shown_capped(s, MAX_SHOWN_NAME_CHARS);
    let mut out = format!(
        "{} {} (method {}, loupe:plugin@{}) — {}\n  file: {}\n  {}\n",
        name(&m.name),
        name(&m.version),
        name(&m.method),
        p.api_version,
        if p.from_cache {
            format!(
                "cached, loaded in {:.1} ms",
                p.load_time.as_secs_f64() * 1e3
            )
        } else {
            format!("compiled in {:.0} ms", p.load_time.as_secs_f64() * 1e3)
        },
        shown(&p.path.display().to_string()),
        shown(&m.description)
    );
    for param in &m.params {
        let default = param.default.as_ref().map_or("required".to_string(), |d| {
            format!("default {}", shown(&terminal_json(d)))
        });
        out.push_str(&format!(
            "    {} ({}, {default}): {}\n",
            name(&param.name),
            param.ty,
            shown(&param.help)
        ));
    }
    out
}

/// A file that did not load (or was refused), as a listing.
fn describe_broken(file: &std::path::Path, error: &str, json: bool) -> String {
    if json {
        terminal_json(&serde_json::json!({ "file": file.display().to_string(), "error": error }))
            + "\n"
    } else {
        format!("BROKEN {}\n\n", shown(error))
    }
}

pub fn run(cmd: PluginsCommand) -> Result<()> {
    let engine = PluginEngine::new()?;
    match cmd {
        PluginsCommand::List { plugins, json } => {
            let plugins =
                plugins.unwrap_or_else(|| super::paths::default_plugins_dir(Some(Path::new("."))));
            let files = find_plugins(&plugins)?;
            if files.is_empty() && !json {
                println!(
                    "no plugins in {}; build them with scripts/build-plugins.sh",
                    plugins.display()
                );
            }
            // Loaded as `loupe run` and `loupe watch` put them in service: two files claiming one
            // name are listed with the second refused.
            let mut registry = PluginRegistry::new();
            let mut broken = 0;
            for file in files {
                match registry.load(&engine, &file) {
                    RegistryEvent::Loaded { .. } => match registry.at(&file) {
                        Some(p) => print!("{}{}", describe(&p, json), if json { "\n" } else { "" }),
                        None => continue,
                    },
                    RegistryEvent::Failed { error, .. } => {
                        broken += 1;
                        print!("{}", describe_broken(&file, &error, json));
                    }
                    RegistryEvent::Removed { .. } => {}
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
            Err(e) => bail!("{}", shown(&e.to_string())),
        },
    }
}
