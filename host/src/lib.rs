//! loupe's host: models, tokenizers, datasets, the plugin runtime and the command line.

pub mod artifacts;
pub mod cli;
pub mod dash;
pub mod data;
pub mod device;
pub mod events;
pub mod model;
pub mod plugin;
pub mod runner;
pub mod selftest;
pub mod suggest;
pub mod tensor_file;
pub mod text;
pub mod tokenizer;
pub mod watch;
