//! Per-recipient caps (Aliyun 50 SMS a day to a number, voice 1/min, 5/h, 20/24 h, Tencent 2 a
//! day …): counted in the database from the attempts themselves, so every instance and every
//! restart sees the same count, a batch's own sends included. Owns the counting and the rule
//! (`breaks_cap`, pure); what a capped send does next is `route::next_step`.

use std::collections::HashMap;

use anyhow::Result;

use crate::channel::Gateways;
use crate::config::Cap;
use crate::store::attempts;

/// For each `(gateway, address)` about to be sent now, the cap it would break, if any.
pub async fn capped(
    gateways: &Gateways,
    conn: &mut sqlx::AnyConnection,
    sends: &[(&str, &str)],
    now: i64,
) -> Result<Vec<Option<String>>> {
    let mut verdicts = vec![None; sends.len()];
    let mut by_gateway: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (gateway, _)) in sends.iter().enumerate() {
        if !gateways.caps(gateway).is_empty() {
            by_gateway.entry(gateway).or_default().push(i);
        }
    }
    for (gateway, idx) in by_gateway {
        let caps = gateways.caps(gateway);
        let longest = caps
            .iter()
            .map(|c| c.window.as_millis() as i64)
            .max()
            .unwrap_or(0);
        let addresses: Vec<&str> = idx.iter().map(|i| sends[*i].1).collect();
        let mut prior: HashMap<String, Vec<i64>> = HashMap::new();
        for (a, at) in attempts::sends_since(conn, gateway, &addresses, now - longest).await? {
            prior.entry(a).or_default().push(at);
        }
        for i in idx {
            let sent = prior.entry(sends[i].1.to_string()).or_default();
            match breaks_cap(caps, sent, now) {
                Some(reason) => verdicts[i] = Some(reason),
                None => sent.push(now),
            }
        }
    }
    Ok(verdicts)
}

/// The cap a send now would break, given when this address was sent to before (pure).
pub fn breaks_cap(caps: &[Cap], sent: &[i64], now: i64) -> Option<String> {
    caps.iter().find_map(|c| {
        let window = c.window.as_millis() as i64;
        let n = sent.iter().filter(|at| **at > now - window).count();
        (n >= c.max as usize).then(|| {
            format!(
                "per-recipient cap {}/{} reached",
                c.max,
                humantime::format_duration(c.window)
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_rolling_windows() {
        let caps = [Cap::parse("1/1m").unwrap(), Cap::parse("5/1h").unwrap()];
        let min = 60_000;
        assert_eq!(breaks_cap(&caps, &[], 10 * min), None);
        assert!(breaks_cap(&caps, &[10 * min - 1000], 10 * min)
            .unwrap()
            .contains("1/1m"));
        assert_eq!(
            breaks_cap(&caps, &[9 * min], 10 * min),
            None,
            "a minute later it may go"
        );
        let five: Vec<i64> = (0..5).map(|i| i * 10 * min).collect();
        assert!(breaks_cap(&caps, &five, 59 * min).unwrap().contains("5/1h"));
        assert_eq!(
            breaks_cap(&caps, &five, 61 * min),
            None,
            "the first left the hour"
        );
    }
}
