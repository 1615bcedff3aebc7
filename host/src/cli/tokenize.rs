use std::path::PathBuf;

use anyhow::Result;
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
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let tokenizer = TextTokenizer::load(&ModelDir::new(&args.model)?.tokenizer_path())?;
    let ids = tokenizer.encode(&args.text)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}
