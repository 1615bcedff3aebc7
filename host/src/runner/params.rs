//! Checking a run's parameters against its plugin's schema, filling in defaults, applying `--set`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::experiment::AtLine;
use crate::plugin::PluginManifest;
use crate::suggest::closest_names;

/// A `--set key=value` from the command line. The value is read as TOML (`3`, `0.5`, `true`,
/// `[1, 2]`, `"text"`), or taken as a plain string when it is not TOML (`blocks.0.mlp.hook_post`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("--set {s}: expected key=value, e.g. --set top_k=10"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("--set {s}: the key is empty"));
        }
        let raw = raw.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        Ok(Override {
            key: key.to_string(),
            value,
        })
    }
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The JSON object a plugin's `run` receives: every schema parameter, given or defaulted, typed.
/// `place` is `file.toml` for messages (`file.toml:12: params.top_k: ...`).
pub fn resolve(
    manifest: &PluginManifest,
    given: &BTreeMap<String, AtLine<toml::Value>>,
    overrides: &[Override],
    place: &str,
    run_line: usize,
) -> Result<Map<String, Value>, String> {
    let names: Vec<&str> = manifest.params.iter().map(|p| p.name.as_str()).collect();
    let unknown = |key: &str, at: String| {
        let close = closest_names(key, &names);
        if close.is_empty() {
            format!("{at}: `{}` takes no parameters", manifest.name)
        } else {
            format!(
                "{at}: `{}` has no parameter `{key}`; did you mean {}?",
                manifest.name,
                close.join(", ")
            )
        }
    };
    for (key, v) in given {
        if !names.contains(&key.as_str()) {
            return Err(unknown(key, format!("{place}:{}: params.{key}", v.line)));
        }
    }
    let mut out = Map::new();
    for p in &manifest.params {
        let from_set = overrides.iter().rev().find(|o| o.key == p.name);
        let (value, at) = if let Some(o) = from_set {
            (to_json(&o.value), format!("--set {}", p.name))
        } else if let Some(v) = given.get(&p.name) {
            (
                to_json(&v.value),
                format!("{place}:{}: params.{}", v.line, p.name),
            )
        } else if let Some(d) = &p.default {
            (d.clone(), String::new())
        } else {
            return Err(format!(
                "{place}:{run_line}: params.{}: required by `{}` ({}) and not given",
                p.name, manifest.name, p.help
            ));
        };
        if !p.ty.admits(&value) {
            return Err(format!("{at}: expected {}, got {value}", p.ty.describe()));
        }
        // Integers given for float parameters stay numbers; plugins deserialize them as f64 fine.
        out.insert(p.name.clone(), value);
    }
    Ok(out)
}

/// `--set` keys that no run's plugin takes are mistakes, not silent no-ops.
pub fn check_overrides_used(
    overrides: &[Override],
    manifests: &[&PluginManifest],
) -> Result<(), String> {
    for o in overrides {
        if !manifests
            .iter()
            .any(|m| m.params.iter().any(|p| p.name == o.key))
        {
            let all: Vec<&str> = manifests
                .iter()
                .flat_map(|m| m.params.iter().map(|p| p.name.as_str()))
                .collect();
            let close = closest_names(&o.key, &all);
            return Err(if close.is_empty() {
                format!(
                    "--set {}: no run's plugin takes a parameter `{}`",
                    o.key, o.key
                )
            } else {
                format!(
                    "--set {}: no run's plugin takes a parameter `{}`; did you mean {}?",
                    o.key,
                    o.key,
                    close.join(", ")
                )
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ParamSpec, ParamType};

    fn manifest() -> PluginManifest {
        let p = |name: &str, ty, default: Option<Value>| ParamSpec {
            name: name.into(),
            ty,
            default,
            help: "help".into(),
        };
        PluginManifest {
            name: "demo".into(),
            version: "1.0.0".into(),
            method: "demo".into(),
            description: String::new(),
            api_version: "0.3.0".into(),
            params: vec![
                p(
                    "hook",
                    ParamType::String,
                    Some(Value::from("blocks.0.hook_resid_post")),
                ),
                p("top_k", ParamType::Int, Some(Value::from(5))),
                p("lr", ParamType::Float, Some(Value::from(0.001))),
                p("layers", ParamType::IntList, None),
            ],
        }
    }

    fn given(pairs: &[(&str, toml::Value)]) -> BTreeMap<String, AtLine<toml::Value>> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    AtLine {
                        value: v.clone(),
                        line: 9,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn defaults_fill_in_and_overrides_win() {
        let g = given(&[
            ("layers", toml::Value::Array(vec![toml::Value::Integer(0)])),
            ("lr", toml::Value::Integer(1)),
        ]);
        let o: Override = "top_k=10".parse().unwrap();
        let out = resolve(&manifest(), &g, &[o], "e.toml", 2).unwrap();
        assert_eq!(out["hook"], Value::from("blocks.0.hook_resid_post"));
        assert_eq!(out["top_k"], Value::from(10));
        assert_eq!(out["lr"], Value::from(1));
        assert_eq!(out["layers"], serde_json::json!([0]));
    }

    #[test]
    fn bad_parameters_are_named_with_their_line() {
        let m = manifest();
        let e = resolve(
            &m,
            &given(&[("top_kk", toml::Value::Integer(1))]),
            &[],
            "e.toml",
            2,
        )
        .unwrap_err();
        assert!(
            e.starts_with("e.toml:9: params.top_kk:") && e.contains("`top_k`"),
            "{e}"
        );
        let g = given(&[
            ("top_k", toml::Value::String("five".into())),
            ("layers", toml::Value::Array(vec![])),
        ]);
        let e = resolve(&m, &g, &[], "e.toml", 2).unwrap_err();
        assert_eq!(
            e,
            "e.toml:9: params.top_k: expected an integer, got \"five\""
        );
        let e = resolve(&m, &given(&[]), &[], "e.toml", 2).unwrap_err();
        assert!(e.starts_with("e.toml:2: params.layers: required"), "{e}");
        let o: Override = "lr=fast".parse().unwrap();
        let g = given(&[("layers", toml::Value::Array(vec![]))]);
        let e = resolve(&m, &g, &[o], "e.toml", 2).unwrap_err();
        assert_eq!(e, "--set lr: expected a number, got \"fast\"");
    }

    #[test]
    fn set_values_read_as_toml_or_plain_strings() {
        let o: Override = "hook=blocks.0.mlp.hook_post".parse().unwrap();
        assert_eq!(
            o.value,
            toml::Value::String("blocks.0.mlp.hook_post".into())
        );
        let o: Override = "x=[1, 2]".parse().unwrap();
        assert_eq!(o.value.as_array().map(Vec::len), Some(2));
        assert!("novalue".parse::<Override>().is_err());
        let m = manifest();
        assert!(check_overrides_used(&["top_k=1".parse().unwrap()], &[&m]).is_ok());
        let e = check_overrides_used(&["topk=1".parse().unwrap()], &[&m]).unwrap_err();
        assert!(e.contains("`top_k`"), "{e}");
    }
}
