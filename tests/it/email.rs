//! E-mail through a real SMTP server started by the test (mailin-embedded), multipart with
//! the answer link.

use std::sync::{Arc, Mutex};

use crate::helpers::{spawn_with_roster, Db, FEED};

/// One mail as received: its recipients and its text.
type Mail = (Vec<String>, String);

#[derive(Clone, Default)]
struct Inbox {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Arc<Mutex<(Vec<String>, Vec<u8>)>>,
}

impl mailin_embedded::Handler for Inbox {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        *self.current.lock().unwrap() = (to.to_vec(), Vec::new());
        mailin_embedded::response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.lock().unwrap().1.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        let (to, data) = std::mem::take(&mut *self.current.lock().unwrap());
        self.mails
            .lock()
            .unwrap()
            .push((to, String::from_utf8_lossy(&data).into_owned()));
        mailin_embedded::response::OK
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_real_smtp_server() {
    let inbox = Inbox::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = mailin_embedded::Server::new(inbox.clone());
    server.with_name("smtp.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("regions.csv"),
        "code,name,level,parent,lat,lon\n450921,容县,county,,22.86,110.56\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("contacts.csv"),
        "key,name,phone,email,role,region,backup,superior,channels\nd1,值班甲,,duty@county.test,county_duty,450921,,,email\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("boundaries.geojson"), r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"450921"},"geometry":{"type":"Polygon","coordinates":[[[110.4,22.7],[110.7,22.7],[110.7,23.0],[110.4,22.7]]]}}]}"#).unwrap();
    let extra = format!(
        "[channels]\nsms = []\nemail = [\"mail\"]\n[gateways.mail]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"防汛叫应 <jiaoying@test.invalid>\"\n"
    );
    let app = spawn_with_roster(Db::Sqlite, &extra, dir.path()).await.unwrap();
    let (s, b) = app.post_cap(&crate::helpers::demo_cap(), FEED).await;
    assert_eq!(s, 202, "{b}");
    let start = std::time::Instant::now();
    while inbox.mails.lock().unwrap().is_empty() {
        assert!(start.elapsed().as_secs() < 20, "no mail arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (to, data) = inbox.mails.lock().unwrap()[0].clone();
    assert_eq!(to, vec!["duty@county.test".to_string()]);
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("text/html"));
    // Both parts are base64 (Chinese text): decode them and look for the answer link.
    let decoded: Vec<String> = data
        .split("Content-Transfer-Encoding: base64")
        .skip(1)
        .map(|part| {
            let body: String = part.split("\r\n--").next().unwrap().split_whitespace().collect();
            use base64::Engine;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(decoded.len(), 2, "{data}");
    assert!(
        decoded[0].contains("http://jy.test/a/") && decoded[0].contains("要求"),
        "{}",
        decoded[0]
    );
    assert!(
        decoded[1].contains("<a href=") && decoded[1].contains("确认收到"),
        "{}",
        decoded[1]
    );
    // The mail went out before its attempt is recorded as sent: wait for the record.
    let sent = "SELECT COUNT(*) FROM attempts WHERE channel = 'email' AND result = 'sent'";
    while app.scalar(sent).await == 0 {
        assert!(start.elapsed().as_secs() < 20, "the sent mail was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM attempts WHERE channel = 'email'")
            .await,
        1
    );
    app.stop().await;
}
