//! SPEC §8: bad input gets a clear error, changes nothing it should not, and is kept.

use std::sync::atomic::Ordering;

use crate::gateway;
use crate::helpers::{demo_cap, spawn, token_in, Db, FEED, OPERATOR, VIEWER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_broken_warnings_are_refused_and_kept() {
    let app = spawn(Db::Sqlite, "[http]\nmax_body_bytes = 20000").await.unwrap();
    let (s, b) = app
        .post_cap(
            b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x",
            FEED,
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "invalid");
    let xxe = br#"<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>"#;
    let (s, b) = app.post_cap(xxe, FEED).await;
    assert_eq!(s, 422);
    assert!(b["error"]["message"].as_str().unwrap().contains("DTD"), "{b}");
    let (s, b) = app.post_cap(&vec![b' '; 30_000], FEED).await;
    assert_eq!(s, 413, "{b}");
    // Refused messages are kept verbatim with their reason.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warning_rejects").await, 2);
    let (s, _) = app.post_cap(&demo_cap(), "wrong-token-000").await;
    assert_eq!(s, 401);
    let (s, _) = app.post_cap(&demo_cap(), VIEWER).await;
    assert_eq!(s, 403);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 0);
    let (s, _) = app.get("/api/v1/incidents", "").await;
    assert_eq!(s, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_unsigned_hooks_and_strangers_change_nothing() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let (s, _) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202);
    let msgs = app
        .gw
        .wait_until(60, "the first messages", |m| !m.is_empty())
        .await;
    let token = token_in(&msgs[0].text);

    // Forged and expired answer links.
    let mut forged = token.clone();
    forged.replace_range(
        forged.len() - 2..,
        if forged.ends_with("AA") { "BB" } else { "AA" },
    );
    let r = app
        .http
        .post(format!("{}/a/{forged}", app.base))
        .form(&[("action", "ack")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let callout: i64 = app.scalar("SELECT MIN(id) FROM callouts").await;
    let expired = jiaoying::answer::token::sign(&app.core.token_key, callout, app.core.clock.now_secs() - 1);
    let r = app
        .http
        .get(format!("{}/a/{expired}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("过期"));

    // Unsigned and badly signed callbacks.
    let body = serde_json::json!({"from": msgs[0].to, "text": "收到"}).to_string();
    let r = app
        .http
        .post(format!("{}/hooks/fake/inbound", app.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .post(format!("{}/hooks/fake/inbound", app.base))
        .header(
            jiaoying::channel::signature::TIMESTAMP_HEADER,
            app.core.clock.now_secs().to_string(),
        )
        .header(jiaoying::channel::signature::SIGNATURE_HEADER, "v1=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 0);

    // A stranger's reply is kept for operators but answers nothing.
    let (s, b) = app.reply("+8613900000000", "收到").await;
    assert_eq!((s, b["outcome"].as_str()), (404, Some("unknown-number")));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM inbound WHERE outcome = 'unknown-number'")
            .await,
        1
    );
    // Unparsed text from a known number is kept too, and answers nothing.
    let (s, b) = app.reply(&msgs[0].to, "明天再说吧").await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("unparsed")));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 0);

    // The genuine link works, and a second answer is idempotent.
    for _ in 0..2 {
        let r = app
            .http
            .post(format!("{}/a/{token}", app.base))
            .form(&[("action", "ack")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("已收到"));
    }
    let r = app
        .http
        .post(format!("{}/a/{token}", app.base))
        .form(&[("action", "evacuation"), ("moved", "lots")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .http
        .post(format!("{}/a/{token}", app.base))
        .form(&[("action", "evacuation"), ("moved", "35")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM acks").await, 1);
    assert_eq!(
        app.scalar("SELECT CAST(SUM(moved) AS BIGINT) FROM evacuations")
            .await,
        35
    );
    // A captured signed 「转移 50」 replayed after a later 「转移 20」 changes nothing.
    let signed = |text: &str, at: i64| {
        gateway::signed(
            &serde_json::json!({"from": msgs[0].to, "text": text, "at": at}),
            at,
        )
    };
    let post = |(body, headers): (Vec<u8>, [(&'static str, String); 2])| {
        let mut req = app
            .http
            .post(format!("{}/hooks/fake/inbound", app.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap()["outcome"].clone(),
            )
        }
    };
    let now = app.core.clock.now_secs();
    let fifty = signed("转移 50", now - 2);
    assert_eq!(post(fifty.clone()).await, (200, "evacuation".into()));
    assert_eq!(post(signed("转移 20", now - 1)).await, (200, "evacuation".into()));
    assert_eq!(post(fifty).await, (200, "replayed".into()));
    let moved = "SELECT moved FROM evacuations ORDER BY id DESC LIMIT 1";
    assert_eq!(app.scalar(moved).await, 20);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM inbound WHERE outcome = 'replayed'")
            .await,
        1
    );

    // The page itself works on a phone without JavaScript: a form, no script.
    let page = app
        .http
        .get(format!("{}/a/{token}", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<form method=\"post\"") && !page.contains("<script") && page.contains("viewport"));

    // Operators record a phone call made by hand; a viewer may not.
    let other: i64 = app.scalar("SELECT MAX(id) FROM callouts").await;
    let url = format!("{}/api/v1/callouts/{other}/ack", app.base);
    let r = app
        .http
        .post(&url)
        .bearer_auth(VIEWER)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .post(&url)
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"note": "电话联系上"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM acks WHERE method = 'operator'")
            .await,
        1
    );
    assert_eq!(app.gw.bad_signatures.load(Ordering::SeqCst), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gateway_is_retried_and_every_try_recorded() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    app.gw.fail_next.store(5, Ordering::SeqCst);
    let (s, b) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202);
    let n = b["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    app.gw
        .wait_until(60, "every message despite 5 failures", |m| m.len() >= n)
        .await;
    // Every message has gone; wait for the last batch's record, then count the tries.
    let start = std::time::Instant::now();
    while (app
        .scalar("SELECT COUNT(*) FROM attempts WHERE result = 'sent'")
        .await as usize)
        < n
    {
        assert!(
            start.elapsed().as_secs() < 30,
            "the sent attempts were never all recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE result = 'transient'")
            .await,
        5
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE result = 'sent'")
            .await as usize,
        n
    );
    let msgs = app.gw.messages();
    assert_eq!(msgs.len(), n, "nothing sent twice");
    // Each message carries its own message key as `ref`.
    let refs: std::collections::HashSet<&str> = msgs.iter().map(|m| m.reference.as_str()).collect();
    assert_eq!(refs.len(), n);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_ledger_is_detected() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let (s, _) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202);
    let store = &app.core.store;
    assert!(jiaoying::store::ledger::verify(store).await.unwrap().is_ok());
    app.execute("UPDATE ledger SET body = '{\"edited\":true}' WHERE seq = 3")
        .await;
    let broken = jiaoying::store::ledger::verify(store).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3);
    app.stop().await;
}

/// A pushed wrapper (here an `<alerts>` list in GB18030) yields each message inside; a feed
/// that only links to CAP files holds no message and is refused with the reason, and kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrappers_yield_each_message_and_link_only_feeds_are_refused() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let list =
        std::fs::read(crate::helpers::repo().join("tests/fixtures/cap/alerts-root.gb18030.xml")).unwrap();
    let (s, b) = app.post_cap(&list, FEED).await;
    assert_eq!(s, 202, "{b}");
    let messages = b["messages"].as_array().expect("one result per message");
    assert_eq!(messages.len(), 2, "{b}");
    assert_eq!(messages[1]["location"], "alerts/alert[1]");
    assert!(
        messages
            .iter()
            .all(|m| m["ingested"]["warning_id"].as_i64().is_some()),
        "{b}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 2);
    // The same list again: every message is known, nothing new.
    let (s, _) = app.post_cap(&list, FEED).await;
    assert_eq!(s, 200);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 2);

    let links = br#"<feed xmlns="http://www.w3.org/2005/Atom"><id>x</id><entry><id>e1</id><link type="application/cap+xml" href="https://example.org/a.xml"/></entry></feed>"#;
    let (s, b) = app.post_cap(links, FEED).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("1 links"), "{b}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warning_rejects").await, 1);
    app.stop().await;
}
