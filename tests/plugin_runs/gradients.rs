//! Gradients asked for by a plugin in one call (`model.run-with-grad`), against PyTorch's.

use super::common::plugins::{assert_success, loupe_run, misbehaving_plugins, read_json, run_dirs};
use super::common::{fixtures_dir, gpt2_reference_grads, grad_mismatch, read_safetensors};
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
