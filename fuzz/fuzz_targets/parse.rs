//! Any bytes through `extract` and every alert it finds through `parse`: errors are fine,
//! panics, hangs and runaway memory are what the fuzzer looks for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jiaoying::cap::parse(data);
    if let Ok(found) = jiaoying::cap::extract(data) {
        for f in found {
            let _ = jiaoying::cap::parse(&f.bytes);
        }
    }
});
