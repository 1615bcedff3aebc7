//! Gradients asked for by a plugin in one call (`model.run-with-grad`), against PyTorch's.

use super::common::plugins::{assert_success, loupe_run, misbehaving_plugins, read_json, run_dirs};
use super::common::{
    fixtures_dir, gpt2_reference_grads, grad_mismatch, read_safetensors, write_lst_pixels,
};
use super::write_experiment;

#[test]
fn a_plugin_gets_pytorchs_gradients_in_one_call() {
    let tour = misbehaving_plugins().join("api-tour.wasm");
    let model = fixtures_dir().join("gpt2-ref");
    let dir = tempfile::tempdir().unwrap();
    // With a `reference` directory the tour plugin takes the gradients of the next-token loss on its
    // ids by the input and every weight, and saves them.
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"{}\"\nmodel = \"{}\"\ndata = {{ reference = \"{}\" }}\n",
            tour.display(),
            model.display(),
            model.display()
        ),
    );
    let runs = dir.path().join("runs");
    assert_success(&loupe_run(&exp, &runs, &["--device", "cpu"]));
    let run = &run_dirs(&runs)[0];
    let summary = &read_json(&run.join("summary.json"))["summary"];
    let (loss, reference) = gpt2_reference_grads();
    let ours = summary["loss_sum"].as_f64().unwrap() as f32;
    assert!((ours - loss).abs() <= 1e-5 * loss, "loss {ours} vs {loss}");
    let grads = read_safetensors(&run.join("artifacts/grads.safetensors"));
    assert_eq!(grads.len(), reference.len(), "{:?}", grads.keys());
    for (name, expected) in &reference {
        let got = &grads[&format!("grad.{name}")];
        assert_eq!(got.shape, expected.shape, "{name}");
        if let Some((i, a, e)) = grad_mismatch(&got.f32s, &expected.f32s) {
            panic!("gradient of {name} from the plugin: element {i} is {a}, PyTorch {e}");
        }
    }
}

#[test]
fn a_plugin_gets_a_vits_pixel_gradient_in_one_call_per_batch() {
    let tour = misbehaving_plugins().join("api-tour.wasm");
    let dir = tempfile::tempdir().unwrap();
    let pixels = write_lst_pixels(dir.path());
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"{}\"\nmodel = \"{}\"\ndata = {{ images = {{ path = \"{}\", kind = \"images\" }} }}\n",
            tour.display(),
            fixtures_dir().join("vit-ref").display(),
            pixels.display()
        ),
    );
    let runs = dir.path().join("runs");
    assert_success(&loupe_run(&exp, &runs, &["--device", "cpu"]));
    let run = &run_dirs(&runs)[0];
    let summary = &read_json(&run.join("summary.json"))["summary"];
    assert_eq!(summary["input"], serde_json::json!([3, 32, 32]));
    assert_eq!(summary["images"], 4);
    assert_eq!(summary["exhausted"], true);
    let lst = read_safetensors(&fixtures_dir().join("lst-ref/lst_reference.safetensors"));
    assert_eq!(summary["labels"], serde_json::json!(lst["y_s"].i32s));
    let grads = read_safetensors(&run.join("artifacts/image_grads.safetensors"));
    let got = &grads["grad.input"];
    assert_eq!(got.shape, [4, 3, 32, 32]);
    if let Some((i, a, e)) = grad_mismatch(&got.f32s, &lst["grad_x0"].f32s) {
        panic!("pixel gradient from the plugin: element {i} is {a}, the reference has {e}");
    }
}

#[test]
fn a_plugin_reads_a_labelled_image_folder() {
    let tour = misbehaving_plugins().join("api-tour.wasm");
    let digits = fixtures_dir().join("vit-digits");
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"{}\"\nmodel = \"{}\"\n[run.data.images]\npath = \"{}\"\nkind = \"images\"\nlabels = \"{}\"\n",
            tour.display(),
            digits.display(),
            digits.join("images").display(),
            digits.join("labels.json").display()
        ),
    );
    let runs = dir.path().join("runs");
    assert_success(&loupe_run(&exp, &runs, &["--device", "cpu"]));
    let summary = &read_json(&run_dirs(&runs)[0].join("summary.json"))["summary"];
    assert_eq!(summary["images"], 50);
    assert_eq!(summary["labelled"], true);
    assert_eq!(summary["names"][0], "0_024.png");
    // The fixture's README: 49 of the 50 are classified correctly.
    assert_eq!(summary["correct"], 49);
}

#[test]
fn image_datasets_refuse_a_language_model_before_the_run_starts() {
    let tour = misbehaving_plugins().join("api-tour.wasm");
    let dir = tempfile::tempdir().unwrap();
    let pixels = write_lst_pixels(dir.path());
    let exp = write_experiment(
        dir.path(),
        &format!(
            "[[run]]\nplugin = \"{}\"\nmodel = \"{}\"\ndata = {{ images = {{ path = \"{}\", kind = \"images\" }} }}\n",
            tour.display(),
            fixtures_dir().join("gpt2-ref").display(),
            pixels.display()
        ),
    );
    let out = loupe_run(&exp, &dir.path().join("runs"), &["--device", "cpu"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dataset `images`") && stderr.contains("must be a vision model"),
        "{stderr}"
    );
}
