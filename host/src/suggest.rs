//! "Did you mean" suggestions for names a user mistyped: hooks, weights, plugins, parameters.

/// Up to three candidates closest to `name` (Jaro–Winkler), best first, each in backticks.
pub fn closest_names<S: AsRef<str>>(name: &str, candidates: &[S]) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c.as_ref()), c.as_ref()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .iter()
        .take(3)
        .map(|(_, c)| format!("`{c}`"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_closest_name_comes_first() {
        let names = [
            "blocks.0.hook_resid_pre",
            "blocks.0.mlp.hook_post",
            "hook_embed",
        ];
        let close = super::closest_names("blocks.0.mlp.hook_pots", &names);
        assert_eq!(close[0], "`blocks.0.mlp.hook_post`");
        assert_eq!(close.len(), 3);
    }
}
