//! A plugin's manifest as the host keeps it, checked for soundness when the plugin loads.

use serde::Serialize;
use serde_json::Value;

use super::bindings::exports::loupe::plugin::method as wit;

/// Parameter types a plugin can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    Bool,
    Int,
    Float,
    String,
    IntList,
    FloatList,
    StringList,
}

impl ParamType {
    /// Whether a JSON value has this type (an integer is a valid float).
    pub fn admits(self, v: &Value) -> bool {
        let all = |f: fn(&Value) -> bool| v.as_array().is_some_and(|a| a.iter().all(f));
        match self {
            ParamType::Bool => v.is_boolean(),
            ParamType::Int => v.is_i64() || v.is_u64(),
            ParamType::Float => v.is_number(),
            ParamType::String => v.is_string(),
            ParamType::IntList => all(|x| x.is_i64() || x.is_u64()),
            ParamType::FloatList => all(Value::is_number),
            ParamType::StringList => all(Value::is_string),
        }
    }

    /// How the type reads in messages and listings.
    pub fn describe(self) -> &'static str {
        match self {
            ParamType::Bool => "a boolean",
            ParamType::Int => "an integer",
            ParamType::Float => "a number",
            ParamType::String => "a string",
            ParamType::IntList => "a list of integers",
            ParamType::FloatList => "a list of numbers",
            ParamType::StringList => "a list of strings",
        }
    }
}

impl std::fmt::Display for ParamType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParamType::Bool => "bool",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::String => "string",
            ParamType::IntList => "int-list",
            ParamType::FloatList => "float-list",
            ParamType::StringList => "string-list",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// `None`: required.
    pub default: Option<Value>,
    pub help: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginManifest {
    pub name: String,
    pub version: String,
    pub method: String,
    pub description: String,
    pub api_version: String,
    pub params: Vec<ParamSpec>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl PluginManifest {
    /// Checks what the plugin declared; the error says which field is wrong.
    pub(crate) fn from_wit(m: wit::PluginManifest) -> Result<Self, String> {
        if !is_identifier(&m.name) || m.name.len() > 64 {
            return Err(format!(
                "name `{}` must be 1–64 lowercase letters, digits, '-' or '_', starting with a letter",
                m.name
            ));
        }
        if m.version.trim().is_empty() {
            return Err("version is empty".into());
        }
        let mut params = Vec::with_capacity(m.params.len());
        for p in m.params {
            if !is_identifier(&p.name) {
                return Err(format!("parameter name `{}` is not an identifier", p.name));
            }
            if params.iter().any(|q: &ParamSpec| q.name == p.name) {
                return Err(format!("parameter `{}` is declared twice", p.name));
            }
            let ty = match p.type_ {
                wit::ParamType::Bool => ParamType::Bool,
                wit::ParamType::Int => ParamType::Int,
                wit::ParamType::Float => ParamType::Float,
                wit::ParamType::String => ParamType::String,
                wit::ParamType::IntList => ParamType::IntList,
                wit::ParamType::FloatList => ParamType::FloatList,
                wit::ParamType::StringList => ParamType::StringList,
            };
            let default = match p.default {
                None => None,
                Some(text) => {
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        format!("parameter `{}`: default `{text}` is not JSON: {e}", p.name)
                    })?;
                    if !ty.admits(&v) {
                        return Err(format!(
                            "parameter `{}`: default {v} is not {}",
                            p.name,
                            ty.describe()
                        ));
                    }
                    Some(v)
                }
            };
            params.push(ParamSpec {
                name: p.name,
                ty,
                default,
                help: p.help,
            });
        }
        Ok(PluginManifest {
            name: m.name,
            version: m.version,
            method: m.method,
            description: m.description,
            api_version: m.api_version,
            params,
        })
    }
}
