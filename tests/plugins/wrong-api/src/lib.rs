//! A plugin built against `loupe:plugin@9.0.0`, a version no loupe speaks: the host must refuse it at
//! load time, naming both versions.

wit_bindgen::generate!({
    inline: r#"
        package loupe:plugin@9.0.0;

        interface method {
            record plugin-manifest { name: string, version: string }
            manifest: func() -> plugin-manifest;
            run: func(params: string) -> result<string, string>;
        }

        world plugin {
            export method;
        }
    "#,
});

struct FromTheFuture;

impl exports::loupe::plugin::method::Guest for FromTheFuture {
    fn manifest() -> exports::loupe::plugin::method::PluginManifest {
        exports::loupe::plugin::method::PluginManifest {
            name: "wrong-api".into(),
            version: "9.0.0".into(),
        }
    }

    fn run(_params: String) -> Result<String, String> {
        Ok("{}".into())
    }
}

export!(FromTheFuture);
