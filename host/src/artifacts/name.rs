//! The rules an untrusted artifact name must follow.

use super::{ArtifactKind, MAX_NAME_COMPONENTS, MAX_NAME_LEN};

/// Checks `name` against the naming rules for `kind` and returns its components, or the rule it breaks
/// (one clause, for the error message).
pub(super) fn validate(name: &str, kind: ArtifactKind) -> Result<Vec<&str>, String> {
    if name.is_empty() {
        return Err(format!(
            "the name is empty; give a relative path such as `results/scores{}`",
            kind.extension()
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err("the name contains a NUL byte; names may not".into());
    }
    if name.contains('\\') {
        return Err("the name contains `\\`; separate directories with `/`".into());
    }
    if name.starts_with('/') {
        return Err(
            "the name is an absolute path; give a path relative to the run's artifacts directory"
                .into(),
        );
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.len() > MAX_NAME_COMPONENTS {
        return Err(format!(
            "the name has {} `/`-separated components; at most {MAX_NAME_COMPONENTS} are allowed",
            components.len()
        ));
    }
    for component in &components {
        check_component(component)?;
    }
    let file = components.last().copied().unwrap_or_default();
    let fits = kind
        .extensions()
        .iter()
        .any(|e| file.ends_with(e) && file.len() > e.len());
    if !fits {
        return Err(format!(
            "a {} artifact's name must end in {}",
            kind.label(),
            kind.extensions().join(" or ")
        ));
    }
    Ok(components)
}

fn check_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("the name has an empty component (`//` or a trailing `/`); remove it".into());
    }
    if component == "." || component == ".." {
        return Err(format!(
            "the component `{component}` is not allowed; a name may not refer to or leave the artifacts directory"
        ));
    }
    if let Some(c) = component
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the name contains `{}`; use only letters, digits, `.`, `_` and `-`, with `/` between directories",
            c.escape_default()
        ));
    }
    if component.starts_with('.') {
        return Err(format!(
            "the component `{component}` starts with `.`; hidden files and directories are not allowed"
        ));
    }
    Ok(())
}
