//! loupe's host: models, tokenizers and the command line.

pub mod cli;
pub mod model;
pub mod tensor_file;
pub mod tokenizer;
