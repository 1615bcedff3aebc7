//! A plugin's manifest and parameter schema, and the glue behind [`export_plugin!`](crate::export_plugin).

use serde_json::Value;

use crate::bindings::exports::loupe::plugin::method as wit;
use crate::error::{Error, ErrorKind};

pub use wit::ParamType;

/// One parameter of a plugin: its type, default and help. The host checks experiment files against
/// these before the plugin runs, fills in defaults, and shows them in `loupe plugins list`.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    /// `None`: required.
    pub default: Option<Value>,
    pub help: String,
}

impl Param {
    fn with(name: &str, ty: ParamType, default: Option<Value>, help: &str) -> Param {
        Param {
            name: name.to_string(),
            ty,
            default,
            help: help.to_string(),
        }
    }

    pub fn bool(name: &str, default: bool, help: &str) -> Param {
        Self::with(name, ParamType::Bool, Some(Value::from(default)), help)
    }

    pub fn int(name: &str, default: i64, help: &str) -> Param {
        Self::with(name, ParamType::Int, Some(Value::from(default)), help)
    }

    pub fn float(name: &str, default: f64, help: &str) -> Param {
        Self::with(name, ParamType::Float, Some(Value::from(default)), help)
    }

    pub fn string(name: &str, default: &str, help: &str) -> Param {
        Self::with(name, ParamType::String, Some(Value::from(default)), help)
    }

    pub fn int_list(name: &str, default: &[i64], help: &str) -> Param {
        Self::with(
            name,
            ParamType::IntList,
            Some(Value::from(default.to_vec())),
            help,
        )
    }

    pub fn float_list(name: &str, default: &[f64], help: &str) -> Param {
        Self::with(
            name,
            ParamType::FloatList,
            Some(Value::from(default.to_vec())),
            help,
        )
    }

    pub fn string_list(name: &str, default: &[&str], help: &str) -> Param {
        Self::with(
            name,
            ParamType::StringList,
            Some(Value::from(default.to_vec())),
            help,
        )
    }

    /// A parameter the experiment must give.
    pub fn required(name: &str, ty: ParamType, help: &str) -> Param {
        Self::with(name, ty, None, help)
    }
}

/// What a plugin is and which parameters it takes.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub method: String,
    pub description: String,
    pub params: Vec<Param>,
}

impl Manifest {
    /// `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: &str, version: &str, method: &str, description: &str) -> Manifest {
        Manifest {
            name: name.to_string(),
            version: version.to_string(),
            method: method.to_string(),
            description: description.to_string(),
            params: Vec::new(),
        }
    }

    pub fn param(mut self, param: Param) -> Manifest {
        self.params.push(param);
        self
    }
}

#[doc(hidden)]
pub fn to_wit(m: Manifest) -> wit::PluginManifest {
    wit::PluginManifest {
        name: m.name,
        version: m.version,
        method: m.method,
        description: m.description,
        api_version: crate::API_VERSION.to_string(),
        params: m
            .params
            .into_iter()
            .map(|p| wit::Param {
                name: p.name,
                type_: p.ty,
                default: p.default.map(|v| v.to_string()),
                help: p.help,
            })
            .collect(),
    }
}

#[doc(hidden)]
pub fn run_with_json<P: crate::Plugin>(
    params: &str,
) -> Result<String, crate::bindings::loupe::plugin::types::Error> {
    let params: P::Params = serde_json::from_str(params)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, "params", format!("{e}")))?;
    let summary = P::run(params)?;
    let summary = match summary {
        Value::Object(_) => summary,
        other => serde_json::json!({ "result": other }),
    };
    Ok(summary.to_string())
}
