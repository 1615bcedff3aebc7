use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::model::ModelDir;
use crate::tokenizer::TextTokenizer;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model directory holding tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The text to tokenize.
    #[arg(long)]
    text: String,
    /// Put the BOS token (`<|endoftext|>`) first, as TransformerLens's `to_tokens` does by default and
    /// as `loupe run` text datasets do.
    #[arg(long)]
    prepend_bos: bool,
    /// Print one line per token — position, id and the text it stands for — instead of a JSON array.
    #[arg(long)]
    show: bool,
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let tokenizer = TextTokenizer::load(&ModelDir::new(&args.model)?.tokenizer_path())?;
    let mut ids = tokenizer.encode(&args.text)?;
    if args.prepend_bos {
        ids.insert(0, bos(&tokenizer, &args.model)?);
    }
    if !args.show {
        println!("{}", serde_json::to_string(&ids)?);
        return Ok(());
    }
    let texts = tokenizer.token_texts(&ids)?;
    println!("{:>5}  {:>7}  token", "pos", "id");
    for (pos, (id, text)) in ids.iter().zip(&texts).enumerate() {
        // Debug quoting shows spaces, newlines and control characters as they are in the token.
        println!("{pos:>5}  {id:>7}  {text:?}");
    }
    Ok(())
}

/// The BOS id of a model's tokenizer, or an error saying the tokenizer has none.
pub fn bos(tokenizer: &TextTokenizer, model: &std::path::Path) -> Result<u32> {
    tokenizer.bos_id().with_context(|| {
        format!(
            "--prepend-bos: {}/tokenizer.json has no `{}` token; leave --prepend-bos out",
            model.display(),
            crate::tokenizer::GPT2_BOS
        )
    })
}
