//! The MLmodel file parser (`stagegate::model_files::parse_mlmodel`): YAML around a JSON
//! signature string. The file comes from the model's artifacts, so anyone who can log a
//! model writes it.
//!
//! Input: the file's bytes, read as the gate reads them (lossy UTF-8).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
use libfuzzer_sys::fuzz_target;
use stagegate::model_files::{self, Signature};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(files) = model_files::parse_mlmodel(&text)
        && let Some(sig) = &files.signature
    {
        // A tensor signature is chosen only when some input is a tensor.
        if let Signature::Tensors(t) = sig {
            assert!(!t.is_empty(), "a tensor signature with no tensors");
        }
        let _ = sig.describe();
    }
});
