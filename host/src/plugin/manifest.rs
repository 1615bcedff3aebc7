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

/// The longest plugin or parameter name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The longest version or method string, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// The most parameters a plugin may declare.
pub const MAX_PARAMS: usize = 256;
/// The longest help text of one parameter, in bytes.
pub const MAX_HELP_LEN: usize = 2048;
/// The longest default value of one parameter (its JSON text, lists included), in bytes.
pub const MAX_DEFAULT_LEN: usize = 16 * 1024;
/// The most bytes all of a manifest's strings may add up to.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A plugin's string as a manifest error quotes it: escaped, one line, short.
fn quoted(s: &str) -> String {
    crate::text::shown_capped(s, MAX_NAME_LEN + 16)
}

/// Refuses a string over `max` bytes, naming the field.
fn within(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{field} is {} bytes long; the limit is {max} bytes",
            text.len()
        ));
    }
    Ok(())
}

/// Refuses a string that must be one short line of text (a version, a method).
fn printable(field: &str, text: &str) -> Result<(), String> {
    within(field, text, MAX_VERSION_LEN)?;
    if text.trim().is_empty() {
        return Err(format!("{field} is empty"));
    }
    if text.chars().any(crate::text::is_unsafe) {
        return Err(format!(
            "{field} `{}` holds control characters; use plain text",
            quoted(text)
        ));
    }
    Ok(())
}

/// The bytes of every string in a manifest, counted before anything else is looked at, so that
/// every later check works on a manifest of bounded size.
fn manifest_bytes(m: &wit::PluginManifest) -> usize {
    let params: usize = m
        .params
        .iter()
        .map(|p| p.name.len() + p.help.len() + p.default.as_ref().map_or(0, String::len))
        .sum();
    m.name.len()
        + m.version.len()
        + m.method.len()
        + m.description.len()
        + m.api_version.len()
        + params
}

impl PluginManifest {
    /// Checks what the plugin declared; the error says which field is wrong, in one line. Every
    /// check is linear in the manifest's size, which is bounded first.
    pub(crate) fn from_wit(m: wit::PluginManifest) -> Result<Self, String> {
        if m.params.len() > MAX_PARAMS {
            return Err(format!(
                "it declares {} parameters; the limit is {MAX_PARAMS}",
                m.params.len()
            ));
        }
        let total = manifest_bytes(&m);
        if total > MAX_MANIFEST_BYTES {
            return Err(format!(
                "its strings add up to {total} bytes; the limit is {MAX_MANIFEST_BYTES} bytes"
            ));
        }
        if !is_identifier(&m.name) || m.name.len() > MAX_NAME_LEN {
            return Err(format!(
                "name `{}` must be 1–{MAX_NAME_LEN} lowercase letters, digits, '-' or '_', starting with a letter",
                quoted(&m.name)
            ));
        }
        printable("version", &m.version)?;
        if !m.method.is_empty() {
            printable("method", &m.method)?;
        }
        within("description", &m.description, MAX_DESCRIPTION_LEN)?;
        within("api-version", &m.api_version, MAX_VERSION_LEN)?;
        let mut seen = std::collections::HashSet::with_capacity(m.params.len());
        let mut params = Vec::with_capacity(m.params.len());
        for p in m.params {
            if !is_identifier(&p.name) || p.name.len() > MAX_NAME_LEN {
                return Err(format!(
                    "parameter name `{}` is not an identifier of at most {MAX_NAME_LEN} bytes",
                    quoted(&p.name)
                ));
            }
            if !seen.insert(p.name.clone()) {
                return Err(format!("parameter `{}` is declared twice", p.name));
            }
            within(
                &format!("parameter `{}`: help", p.name),
                &p.help,
                MAX_HELP_LEN,
            )?;
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
                    within(
                        &format!("parameter `{}`: default", p.name),
                        &text,
                        MAX_DEFAULT_LEN,
                    )?;
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        format!(
                            "parameter `{}`: default `{}` is not JSON: {e}",
                            p.name,
                            quoted(&text)
                        )
                    })?;
                    if !ty.admits(&v) {
                        return Err(format!(
                            "parameter `{}`: default {} is not {}",
                            p.name,
                            quoted(&v.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, help: &str, default: Option<&str>) -> wit::Param {
        wit::Param {
            name: name.into(),
            type_: wit::ParamType::Int,
            default: default.map(str::to_string),
            help: help.into(),
        }
    }

    fn manifest(params: Vec<wit::Param>) -> wit::PluginManifest {
        wit::PluginManifest {
            name: "p".into(),
            version: "1.0.0".into(),
            method: "test".into(),
            description: "a test".into(),
            api_version: "0.3.0".into(),
            params,
        }
    }

    fn refused(m: wit::PluginManifest) -> String {
        let e = PluginManifest::from_wit(m).expect_err("must be refused");
        assert!(!e.contains('\n') && e.len() < 400, "one short line: {e:?}");
        e
    }

    #[test]
    fn counts_and_sizes_are_bounded_with_one_line_errors() {
        // Many parameters with distinct long names: refused by count, before any per-name work.
        let many = (0..MAX_PARAMS + 1)
            .map(|i| param(&format!("p{i}_{}", "x".repeat(50)), "", None))
            .collect();
        assert!(refused(manifest(many)).contains(&format!("the limit is {MAX_PARAMS}")));

        let mut m = manifest(vec![]);
        m.description = "d".repeat(MAX_DESCRIPTION_LEN + 1);
        assert!(refused(m).contains("description is 4097 bytes long"));

        let big_help = "h".repeat(MAX_HELP_LEN);
        let all = (0..MAX_PARAMS)
            .map(|i| param(&format!("p{i}"), &big_help, None))
            .collect();
        assert!(refused(manifest(all)).contains("its strings add up to"));

        let mut m = manifest(vec![param("k", &"h".repeat(MAX_HELP_LEN + 1), None)]);
        assert!(refused(m.clone()).contains("parameter `k`: help is"));
        m.params[0] = param(
            "k",
            "",
            Some(&format!("[{}1]", "1,".repeat(MAX_DEFAULT_LEN))),
        );
        assert!(refused(m).contains("parameter `k`: default is"));

        let long_name = "a".repeat(10_000);
        let mut m = manifest(vec![]);
        m.name = long_name.clone();
        let e = refused(m);
        assert!(e.contains("… ["), "the name is shown cut: {e}");
        assert!(refused(manifest(vec![param(&long_name, "", None)])).contains("parameter name"));
    }

    #[test]
    fn duplicates_are_found_with_a_set_and_text_fields_are_plain() {
        let m = PluginManifest::from_wit(manifest(vec![param("k", "top k", Some("5"))])).unwrap();
        assert_eq!(m.params[0].default, Some(Value::from(5)));
        let mut params: Vec<wit::Param> = (0..MAX_PARAMS - 1)
            .map(|i| param(&format!("p{i}"), "", None))
            .collect();
        params.push(param("p7", "", None));
        assert_eq!(
            refused(manifest(params)),
            "parameter `p7` is declared twice"
        );
        let mut m = manifest(vec![]);
        m.version = "1.0\n[loupe] done".into();
        let e = refused(m);
        assert!(e.contains("control characters") && e.contains("\\n"), "{e}");
        let mut m = manifest(vec![]);
        m.version = "v".repeat(MAX_VERSION_LEN + 1);
        assert!(refused(m).contains("version is 65 bytes long"));
    }
}
