//! Exercises the plugin API end to end and reports what it saw in its summary, for the tests to check
//! against what they know: datasets, the model's facts, weights, tokens, interventions, errors, artifacts.

use loupe_plugin_api::data::{datasets, image_datasets};
use loupe_plugin_api::model::ModelInput;
use loupe_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {}

struct ApiTour;

/// The largest absolute difference between two tensors, read back as one number.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = a.sub(b)?.abs()?;
    d.reshape(&[d.numel()])?.max(0, false)?.item()
}

impl Plugin for ApiTour {
    type Params = Params;

    fn manifest() -> Manifest {
        Manifest::new(
            "api-tour",
            env!("CARGO_PKG_VERSION"),
            "test",
            "Exercises the API",
        )
    }

    fn run(_: Params) -> Result<Value> {
        if datasets().iter().any(|d| d.name == "reference") {
            return reference_gradients();
        }
        if image_datasets().iter().any(|d| d.name == "images") {
            return image_gradients();
        }
        // Cached activations: every row, in order, in batches of 3.
        let acts = Dataset::open("acts")?;
        let mut rows = 0;
        let mut sum = 0.0f64;
        for batch in acts.batches(3) {
            let batch = batch?;
            rows += batch.shape()[0];
            sum += batch.sum_all()? as f64;
        }
        let exhausted = acts.next_batch(3)?.is_none();
        acts.reset()?;
        let first = acts
            .next_batch(1)?
            .expect("a row after reset")
            .to_vec_f32()?;

        // The model: facts, weights, tokens.
        let info = model::info()?;
        let wte = model::weight("wte.weight")?;
        let missing_weight = model::weight("wte.weights")
            .expect_err("no such weight")
            .to_string();
        let ids = model::tokenize("attention heads move information")?;
        let text = model::decode(&ids)?;

        // Interventions: with the attention output zeroed, the residual stream passes block 0's
        // attention unchanged.
        let text_data = Dataset::open("text")?;
        let tokens = text_data.next_batch(2)?.expect("a batch of text");
        let pre = "blocks.0.hook_resid_pre";
        let mid = "blocks.0.hook_resid_mid";
        let mut plain = Forward::new(&tokens)
            .capture(pre)
            .capture(mid)
            .without_logits()
            .run()?;
        let plain_change = max_abs_diff(&plain.take(mid)?, &plain.take(pre)?)?;
        let mut ablated = Forward::new(&tokens)
            .capture(pre)
            .capture(mid)
            .intervene(Intervention::zero("blocks.0.hook_attn_out"))
            .without_logits()
            .run()?;
        let ablated_change = max_abs_diff(&ablated.take(mid)?, &ablated.take(pre)?)?;
        let logits = Forward::new(&tokens).run()?.logits.expect("logits").shape();
        let bad_hook = Forward::new(&tokens)
            .capture("blocks.0.hook_resid_mdi")
            .run()
            .err()
            .map(|e| e.to_string());

        // Gradients in one call: the next-token cross-entropy by the input, a hook and a weight; and
        // the chain rule: the hook's gradient, fed back as the cotangent there, gives the input's.
        let hook = "blocks.0.hook_resid_post";
        let mut grads = Forward::new(&tokens)
            .without_logits()
            .grad_of(Objective::NextToken)
            .wrt("input")
            .wrt(hook)
            .wrt("h.0.mlp.c_fc.weight")
            .run()?;
        let grad_names: Vec<String> = grads.grads.keys().cloned().collect();
        let grad_logits = grads.output.logits.is_some();
        let at_hook = grads.take(hook)?;
        let by_input = grads.take("input")?;
        let mut chained = Forward::new(&tokens)
            .without_logits()
            .grad_of(Objective::Cotangent {
                at: hook,
                direction: &at_hook,
            })
            .wrt("input")
            .run()?;
        let chain_diff = max_abs_diff(&chained.take("input")?, &by_input)?;
        let input_grad_scale = by_input
            .abs()?
            .reshape(&[by_input.numel()])?
            .max(0, false)?
            .item()?;
        let bad_wrt = Forward::new(&tokens)
            .grad_of(Objective::NextToken)
            .wrt("inptu")
            .run()
            .err()
            .map(|e| e.to_string());

        // A pass too big for the run's tensor quota is refused before it starts.
        let big = Tensor::zeros(&[512, 128])?.to_dtype(DType::I32)?;
        let too_big = Forward::new(&big).run().err().map(|e| e.to_string());

        // Training ops: a TopK activation and one Adam step.
        let kept = Tensor::from_f32(&[1.0, 5.0, 3.0, 2.0], &[1, 4])?
            .keep_top_k(2)?
            .to_vec_f32()?;
        let w = Tensor::from_f32(&[1.0, 1.0], &[2])?;
        let g = Tensor::from_f32(&[0.5, -0.5], &[2])?;
        let zeros = Tensor::zeros(&[2])?;
        let config = AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        };
        let (w, _, _) = Tensor::adam_step(&w, &g, &zeros, &zeros, config, 1)?;
        let adam = w.to_vec_f32()?;

        // Artifacts of every kind.
        let image = Tensor::rand_uniform(&[4, 6, 3], 0.0, 1.0, runtime::seed())?;
        report::save_png("tour/image.png", &image)?;
        report::save_csv(
            "tour/table.csv",
            &["a", "b"],
            &[vec!["1".into(), "x,y".into()]],
        )?;
        report::save_tensors("tour/wte.safetensors", &[("wte", &wte)])?;

        Ok(json!({
            "datasets": datasets().iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
            "acts_rows": rows,
            "acts_sum": sum,
            "acts_exhausted": exhausted,
            "acts_first_row": first,
            "n_layers": info.n_layers,
            "d_model": info.d_model,
            "bos": info.bos_token,
            "wte_shape": wte.shape(),
            "missing_weight": missing_weight,
            "round_trip": text,
            "plain_change": plain_change,
            "ablated_change": ablated_change,
            "logits_shape": logits,
            "bad_hook": bad_hook,
            "too_big": too_big,
            "keep_top_k": kept,
            "adam": adam,
            "seed": runtime::seed(),
            "loss": grads.value,
            "grad_names": grad_names,
            "grad_logits": grad_logits,
            "chain_diff": chain_diff,
            "input_grad_scale": input_grad_scale,
            "bad_wrt": bad_wrt,
        }))
    }
}

/// With a `reference` directory (gpt2-ref): the gradients of the next-token loss on its
/// `reference.safetensors` ids by the input and every weight, saved for the test to compare with
/// PyTorch's.
fn reference_gradients() -> Result<Value> {
    let reference = Directory::open("reference")?.read_tensors("reference.safetensors")?;
    let (_, ids) = reference
        .into_iter()
        .find(|(name, _)| name == "input_ids")
        .expect("reference.safetensors holds input_ids");
    let out = Forward::new(&ids)
        .without_logits()
        .grad_of(Objective::NextToken)
        .wrt("input")
        .wrt("*.weight")
        .wrt("*.bias")
        .run()?;
    let named: Vec<(String, &Tensor)> = out
        .grads
        .iter()
        .map(|(name, g)| (format!("grad.{name}"), g))
        .collect();
    let borrowed: Vec<(&str, &Tensor)> = named.iter().map(|(n, g)| (n.as_str(), *g)).collect();
    report::save_tensors("grads.safetensors", &borrowed)?;
    Ok(json!({ "loss_sum": out.value, "grads": out.grads.len() }))
}

/// With an image dataset `images` and a vision model: in batches of 3, the gradient of the summed
/// cross-entropy against the dataset's labels with respect to the pixels, in one call each; the
/// gradients are saved, and the summary says what the plugin saw.
fn image_gradients() -> Result<Value> {
    let ModelInput::Pixels(input) = model::input()? else {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "api-tour",
            "an image dataset needs a vision model",
        ));
    };
    let images = Images::open("images")?;
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let (mut grads, mut names, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for batch in images.batches(3) {
        let batch = batch?;
        let batch_labels = batch.labels.clone().unwrap_or_default();
        let l = Tensor::from_i32(&batch_labels, &[batch_labels.len()])?;
        let mut out = Forward::new(&batch.pixels)
            .grad_of(Objective::CrossEntropy(&l))
            .wrt("input")
            .run()?;
        loss += out.value as f64;
        let logits = out
            .output
            .logits
            .take()
            .expect("logits of a cross-entropy pass");
        let predicted = logits.argmax(-1, false)?.to_vec_i32()?;
        correct += predicted
            .iter()
            .zip(&batch_labels)
            .filter(|(p, l)| p == l)
            .count();
        grads.push(out.take("input")?);
        names.extend(batch.names);
        labels.extend(batch_labels);
    }
    let parts: Vec<&Tensor> = grads.iter().collect();
    let all = Tensor::concat(&parts, 0)?;
    report::save_tensors("image_grads.safetensors", &[("grad.input", &all)])?;
    let info = images.info();
    Ok(json!({
        "input": [input.channels, input.height, input.width],
        "classes_of_model": input.labels.len(),
        "images": images.len(),
        "labelled": info.labelled,
        "classes": info.classes,
        "names": names,
        "labels": labels,
        "loss_sum": loss,
        "correct": correct,
        "exhausted": images.next_batch(3)?.is_none(),
    }))
}

export_plugin!(ApiTour);
