//! The reply grammar: any text an official may send back (an SMS reply, a door-knock answer).
//! Only valid UTF-8 reaches the grammar in the daemon, so other bytes are read lossily here.
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let _ = jiaoying::answer::reply::parse(&text);
        let _ = jiaoying::domain::Knock::read(&text);
    });
}
