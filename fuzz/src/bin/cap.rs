//! The CAP reader: any bytes through `cap::extract` and every alert it finds through
//! `cap::parse`. Errors are fine; panics, hangs and runaway memory are what AFL looks for.
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let _ = jiaoying::cap::parse(data);
        if let Ok(found) = jiaoying::cap::extract(data) {
            for f in found {
                let _ = jiaoying::cap::parse(&f.bytes);
            }
        }
    });
}
