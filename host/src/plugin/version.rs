//! Which `loupe:plugin` versions this host can run.

/// The API version the host implements.
pub const HOST_API_VERSION: &str = loupe_plugin_api::API_VERSION;

fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// Semver compatibility of a plugin built for `plugin` with a host speaking `host`: the same major
/// version with a minor no newer than the host's. For 0.x, where every minor may break and additions
/// come as patch releases, the same minor with a patch no newer than the host's (an older plugin
/// imports a subset of what the host provides).
pub fn compatible(host: &str, plugin: &str) -> bool {
    let (Some(h), Some(p)) = (parse(host), parse(plugin)) else {
        return false;
    };
    if h.0 != p.0 {
        return false;
    }
    if h.0 == 0 {
        h.1 == p.1 && p.2 <= h.2
    } else {
        p.1 <= h.1
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn semver_rules() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(
            !compatible("0.1.0", "0.1.7"),
            "a newer 0.x patch may use what the host lacks"
        );
        assert!(compatible("0.3.1", "0.3.0"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(!compatible("0.1.0", "1.0.0"));
        assert!(compatible("1.4.0", "1.2.9"));
        assert!(!compatible("1.2.0", "1.4.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("0.1.0", "banana"));
        assert!(!compatible("0.1.0", "0.1"));
    }
}
