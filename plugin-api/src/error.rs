//! Errors from host calls and from the plugin itself.

use crate::bindings::loupe::plugin::types as wit;

pub use wit::ErrorKind;

/// A failed call: which op, and a one-line message naming the shapes, hooks or values involved.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub op: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, op: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            op: op.into(),
            message: message.into(),
        }
    }

    /// A parameter or input the user must change.
    pub fn invalid(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, op, message)
    }

    /// Anything else that went wrong inside the plugin.
    pub fn other(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, op, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        Error {
            kind: e.kind,
            op: e.op,
            message: e.message,
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        wit::Error {
            kind: e.kind,
            op: e.op,
            message: e.message,
        }
    }
}
