//! Aliyun request signatures (PROVIDERS.md §1.2–1.3): V3 `ACS3-HMAC-SHA256` (canonical request,
//! string to sign, `Authorization` header), which the adapters send, and the classic RPC V2
//! HMAC-SHA1 signature, kept for its official vectors. Pure: no IO, no clock, no randomness;
//! the caller passes the date, the nonce and the secret, and keeps the secret out of logs.

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// The SHA-256 of an empty body (RPC calls send their parameters in the query).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986: only `A-Z a-z 0-9 - _ . ~` stay; a space is `%20`, `*` is `%2A`, hex upper-case.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path keeps its `/`.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parameters sorted by name, `enc(name)=enc(value)` joined with `&`. An empty value gives the
/// bare name, as the official SDK does (vector A6; the doc says `name=`): the adapters never
/// send an empty value, so the two readings never differ on the wire.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (encode(k.as_ref()), encode(v.as_ref())))
        .collect();
    p.sort();
    p.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The signed headers (`x-acs-*`, `host`, `content-type`), lower-cased, trimmed and sorted, each
/// `name:value\n`; a name given twice is one entry with its values sorted and joined by `,`
/// (the SDK's merge, vector A6). Returns the block and the `;`-joined names.
pub fn canonical_headers<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> (String, String) {
    let mut merged: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in headers {
        let name = k.as_ref().trim().to_ascii_lowercase();
        if name.starts_with("x-acs-") || name == "host" || name == "content-type" {
            merged
                .entry(name)
                .or_default()
                .push(v.as_ref().trim().to_string());
        }
    }
    let mut block = String::new();
    for (name, values) in &mut merged {
        values.sort();
        block.push_str(name);
        block.push(':');
        block.push_str(&values.join(","));
        block.push('\n');
    }
    let names = merged.keys().cloned().collect::<Vec<_>>().join(";");
    (block, names)
}

/// `METHOD\nURI\nQUERY\nHEADERS\nSIGNED\nPAYLOAD_HASH` (the header block ends in `\n`, so a
/// blank line precedes the signed names). Returns it with the signed header names.
pub fn canonical_request<K: AsRef<str>, V: AsRef<str>, H: AsRef<str>, W: AsRef<str>>(
    method: &str,
    path: &str,
    query: &[(K, V)],
    headers: &[(H, W)],
    payload_sha256: &str,
) -> (String, String) {
    let uri = utf8_percent_encode(path, PATH).to_string();
    let (block, signed) = canonical_headers(headers);
    let req = format!(
        "{method}\n{uri}\n{}\n{block}\n{signed}\n{payload_sha256}",
        canonical_query(query)
    );
    (req, signed)
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 of the string to sign, keyed with the raw secret (no `&`).
pub fn signature(secret: &str, canonical_request: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(string_to_sign(canonical_request).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn authorization(key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ALGORITHM} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// One RPC-style call as the official SDK sends it: POST `/`, the parameters in the query, an
/// empty body.
pub struct RpcCall<'a> {
    pub host: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    /// `yyyy-MM-ddTHH:mm:ssZ`, UTC.
    pub date: &'a str,
    pub nonce: &'a str,
    pub query: &'a [(String, String)],
}

/// The headers to send with `call` (`host` included), `Authorization` last.
pub fn rpc_headers(call: &RpcCall<'_>, key_id: &str, secret: &str) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = vec![
        ("host", call.host.to_string()),
        ("x-acs-action", call.action.to_string()),
        ("x-acs-version", call.version.to_string()),
        ("x-acs-date", call.date.to_string()),
        ("x-acs-signature-nonce", call.nonce.to_string()),
        ("x-acs-content-sha256", EMPTY_SHA256.to_string()),
    ];
    let (req, signed) = canonical_request("POST", "/", call.query, &h, EMPTY_SHA256);
    let sig = signature(secret, &req);
    h.push(("authorization", authorization(key_id, &signed, &sig)));
    h
}

/// The classic RPC signature (V2, `SignatureVersion=1.0`): Base64 HMAC-SHA1, keyed
/// `secret + "&"`, of `METHOD&%2F&enc(canonical query)`; `params` are every parameter but
/// `Signature`.
pub fn rpc_v2_signature<K: AsRef<str>, V: AsRef<str>>(
    method: &str,
    params: &[(K, V)],
    secret: &str,
) -> String {
    use base64::Engine;
    let to_sign = format!("{method}&%2F&{}", encode(&canonical_query(params)));
    let mut m =
        Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("HMAC takes any key");
    m.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a1_rpc_v2_describe_regions() {
        let p = v2(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            format!("GET&%2F&{}", encode(&canonical_query(&p))),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            rpc_v2_signature("GET", &p, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn a2_rpc_v2_send_sms() {
        let p = v2(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            format!("GET&%2F&{}", encode(&canonical_query(&p))),
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
        );
        let sig = rpc_v2_signature("GET", &p, "testSecret");
        assert_eq!(sig, "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        assert_eq!(encode(&sig), "zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D");
    }

    fn a4_headers(date: &str, nonce: &str) -> Vec<(&'static str, String)> {
        vec![
            ("host", "ecs.cn-shanghai.aliyuncs.com".into()),
            ("x-acs-action", "RunInstances".into()),
            ("x-acs-version", "2014-05-26".into()),
            ("x-acs-date", date.into()),
            ("x-acs-signature-nonce", nonce.into()),
            ("x-acs-content-sha256", EMPTY_SHA256.into()),
        ]
    }

    const A4_QUERY: [(&str, &str); 2] = [
        ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
        ("RegionId", "cn-shanghai"),
    ];

    #[test]
    fn a4_v3_run_instances_worked_steps() {
        let h = a4_headers("2023-10-26T10:22:32Z", "3156853299f313e23d1673dc12e1703d");
        let (req, signed) = canonical_request("POST", "/", &A4_QUERY, &h, EMPTY_SHA256);
        assert_eq!(
            req,
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(req.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            signature("YourAccessKeySecret", &req),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
        assert_eq!(
            authorization("YourAccessKeyId", &signed, &signature("YourAccessKeySecret", &req)),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn a5_v3_second_doc_example() {
        let h = a4_headers("2023-10-26T09:01:01Z", "d410180a5abf7fe235dd9b74aca91fc0");
        let (req, _) = canonical_request("POST", "/", &A4_QUERY, &h, EMPTY_SHA256);
        assert_eq!(
            signature("YourAccessKeySecret", &req),
            "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"
        );
    }

    #[test]
    fn a6_v3_sdk_test_empty_value_and_duplicate_headers() {
        let query = [("test", "ok"), ("empty", "")];
        let headers = [("x-acs-test", "http"), ("x-acs-TEST", "https")];
        let (req, signed) = canonical_request(
            "GET",
            "",
            &query,
            &headers,
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        );
        assert_eq!(
            req,
            "GET\n\nempty&test=ok\nx-acs-test:http,https\n\nx-acs-test\n55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23"
        );
        assert_eq!(
            authorization("acesskey", &signed, &signature("secret", &req)),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=da772425f29289d3460d5fc961455d40c5e8c6afd0888b78a910c991e6a14846"
        );
    }

    #[test]
    fn a7_v2_sdk_test() {
        let p = [("query", "test"), ("body", "test")];
        assert_eq!(
            format!("GET&%2F&{}", encode(&canonical_query(&p))),
            "GET&%2F&body%3Dtest%26query%3Dtest"
        );
        assert_eq!(
            rpc_v2_signature("GET", &p, "secret"),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
    }

    #[test]
    fn d1_v3_send_sms_regression() {
        let query: Vec<(String, String)> = v2(&[
            ("PhoneNumbers", "13800000000"),
            ("SignName", "阿里云短信测试"),
            ("TemplateCode", "SMS_154950909"),
            ("TemplateParam", "{\"code\":\"1234\"}"),
        ]);
        assert_eq!(
            canonical_query(&query),
            "PhoneNumbers=13800000000&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95&TemplateCode=SMS_154950909&TemplateParam=%7B%22code%22%3A%221234%22%7D"
        );
        let call = RpcCall {
            host: "dysmsapi.aliyuncs.com",
            action: "SendSms",
            version: "2017-05-25",
            date: "2023-10-26T10:22:32Z",
            nonce: "3156853299f313e23d1673dc12e1703d",
            query: &query,
        };
        let h = rpc_headers(&call, "YourAccessKeyId", "YourAccessKeySecret");
        let (req, _) = canonical_request("POST", "/", &query, &h, EMPTY_SHA256);
        assert_eq!(
            sha256_hex(req.as_bytes()),
            "32653f55b28ad550b1a37aec5d9c7363440683a286da84c03112f28e6f7c44c3"
        );
        let auth = &h.last().unwrap().1;
        assert!(
            auth.ends_with(",Signature=8ea074df6b09a413025b88585d4f753bc2ae681c8c8104d71c3e0e2d9b0f9aeb"),
            "{auth}"
        );
    }

    #[test]
    fn rfc3986_space_star_tilde() {
        assert_eq!(encode(" ~/*-+"), "%20~%2F%2A-%2B");
        assert_eq!(canonical_query(&[("test", " ~/*-+")]), "test=%20~%2F%2A-%2B");
    }
}
