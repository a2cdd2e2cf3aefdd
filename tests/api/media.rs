//! Media: uploads read by their bytes, cleaned of metadata, turned upright,
//! limited in size and pixels; served with safe headers; deleted with their
//! files; the same round trip on local storage and on a real S3 server.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};
use spanglish::accounts::Role;
use spanglish::config::Secret;
use tempfile::TempDir;

use crate::events::{create_event, event_input};
use crate::support::{Backend, TestApp, error_code, on_both_databases};

const DELETE: &str = "mutation($id: ID!) { deleteMedia(id: $id) }";

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::new_rgb8(width, height)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A JPEG as a phone writes it: 2×1 pixels stored sideways, with an EXIF
/// block saying "rotate 90° clockwise" (orientation 6) and a GPS position.
fn jpeg_with_exif() -> Vec<u8> {
    let image = RgbImage::from_fn(2, 1, |x, _| Rgb([if x == 0 { 255 } else { 0 }, 0, 0]));
    let mut plain = Vec::new();
    JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&image)
        .unwrap();

    // TIFF, big-endian: IFD0 holds Orientation and a pointer to the GPS IFD,
    // which holds GPSLatitudeRef "S".
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&[0, 2]);
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(&[0, 1]);
    tiff.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'S', 0, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);

    let length = (payload.len() + 2) as u16;
    let mut jpeg = plain[..2].to_vec();
    jpeg.extend_from_slice(&[0xFF, 0xE1]);
    jpeg.extend_from_slice(&length.to_be_bytes());
    jpeg.extend_from_slice(&payload);
    jpeg.extend_from_slice(&plain[2..]);
    jpeg
}

/// A PNG that declares 40000×40000 pixels (6.4 GB decoded) in a few bytes.
fn png_bomb_header() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    out.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(idat);
    out.extend_from_slice(&crc32(idat).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A multipart body written by hand, so the test controls every header.
fn multipart(file: &[u8], file_name: &str, declared: &str, related: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(related) = related {
        body.extend_from_slice(
            format!("--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"relatedId\"\r\n\r\n{related}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {declared}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--XBOUNDARYX--\r\n");
    body
}

async fn post_upload(app: &TestApp, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/api/media/upload"))
        .header("content-type", "multipart/form-data; boundary=XBOUNDARYX")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn upload(app: &TestApp, token: &str, file: &[u8], name: &str) -> Value {
    let (status, body) =
        post_upload(app, Some(token), multipart(file, name, "image/png", None)).await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn download(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

fn local(dir: &TempDir) -> impl FnOnce(&mut spanglish::Config) + '_ {
    move |config| config.media_dir = dir.path().to_path_buf()
}

fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

async fn an_organizer_uploads_a_png_and_anyone_downloads_it(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let related = uuid::Uuid::now_v7().to_string();

    let body = multipart(&png(640, 480), "banner.png", "image/png", Some(&related));
    let (status, media) = post_upload(&app, Some(&organizer.token), body).await;

    assert_eq!(status, 201, "{media}");
    let id = media["id"].as_str().unwrap();
    assert_eq!(media["contentType"], "image/png");
    assert_eq!(
        (media["width"].as_i64(), media["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(media["relatedId"], related.as_str());
    assert_eq!(
        media["url"].as_str().unwrap(),
        format!("{}/api/media/{id}", app.state.config.public_url())
    );
    let response = download(&app, &format!("/api/media/{id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("cache-control"));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, media["size"].as_i64().unwrap());
    let thumb = download(&app, &format!("/api/media/{id}/thumbnail")).await;
    let thumb = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (400, 300));

    let answer = app
        .gql(None, "query($id: ID!) { media(id: $id) { id url contentType size width height relatedId createdAt } }", json!({ "id": id }))
        .await;
    assert_eq!(answer["data"]["media"]["width"], 640, "{answer}");
    assert_eq!(answer["data"]["media"]["url"], media["url"]);
    assert_eq!(
        app.audit_actions(&format!("media:{id}")).await,
        vec!["media.upload"]
    );
}

async fn exif_is_stripped_and_orientation_applied(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let source = jpeg_with_exif();
    assert!(
        source.windows(4).any(|w| w == b"Exif"),
        "the fixture carries EXIF"
    );

    let media = upload(&app, &organizer.token, &source, "phone.jpg").await;

    assert_eq!(media["contentType"], "image/jpeg");
    assert_eq!(
        (media["width"].as_i64(), media["height"].as_i64()),
        (Some(1), Some(2))
    );
    let id = media["id"].as_str().unwrap();
    let bytes = download(&app, &format!("/api/media/{id}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"Exif"), "EXIF survived");
    let stored = image::load_from_memory(&bytes).unwrap();
    assert_eq!((stored.width(), stored.height()), (1, 2));
}

async fn only_real_images_are_taken(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let html = b"<html><body><script>alert(document.cookie)</script></body></html>";

    for (file, name, declared) in [
        (&svg[..], "logo.svg", "image/svg+xml"),
        (&html[..], "innocent.png", "image/png"),
        (b"\x89PNG\r\n\x1a\nnot really", "broken.png", "image/png"),
    ] {
        let body = multipart(file, name, declared, None);
        let (status, answer) = post_upload(&app, Some(&organizer.token), body).await;
        assert_eq!(status, 415, "{name}: {answer}");
        assert_eq!(answer["code"], "BAD_USER_INPUT");
    }
    assert!(files_under(dir.path()).is_empty());
}

async fn a_truncated_picture_is_refused_as_unreadable(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let whole = png(64, 64);
    for cut in [8, 33, 57, whole.len() - 12] {
        let body = multipart(&whole[..cut], "cut.png", "image/png", None);
        let (status, answer) = post_upload(&app, Some(&organizer.token), body).await;
        assert_eq!(status, 415, "cut at {cut}: {answer}");
    }
}

async fn a_huge_declared_picture_is_refused_before_decoding(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let body = multipart(&png_bomb_header(), "bomb.png", "image/png", None);
    let (status, answer) = post_upload(&app, Some(&organizer.token), body).await;

    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "BAD_USER_INPUT");
    assert!(
        answer["message"].as_str().unwrap().contains("too large"),
        "{answer}"
    );
}

async fn uploads_over_the_limit_are_413(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, |config| {
        config.media_dir = dir.path().to_path_buf();
        config.media_max_bytes = 32 * 1024;
    })
    .await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let mut padded = png(8, 8);

    // Over the file limit but within the multipart allowance: counted part by part.
    padded.resize(40 * 1024, 0);
    let (status, answer) = post_upload(
        &app,
        Some(&organizer.token),
        multipart(&padded, "a.png", "image/png", None),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["code"], "BAD_USER_INPUT");

    // Far over both: the body limit stops the stream.
    padded.resize(400 * 1024, 0);
    let (status, answer) = post_upload(
        &app,
        Some(&organizer.token),
        multipart(&padded, "b.png", "image/png", None),
    )
    .await;
    assert_eq!(status, 413, "{answer}");

    assert!(files_under(dir.path()).is_empty());
}

async fn a_path_like_file_name_goes_nowhere(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let media = upload(&app, &organizer.token, &png(10, 10), "../../etc/passwd.png").await;

    let id = media["id"].as_str().unwrap();
    assert_eq!(
        files_under(dir.path()),
        vec![format!("media/{id}-thumb.png"), format!("media/{id}.png")]
    );
    assert!(!media.to_string().contains("passwd"));
}

async fn only_organizers_upload(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let member = app.user_with_role(Role::Member).await;
    let staff = app.user_with_role(Role::Staff).await;
    let body = || multipart(&png(4, 4), "a.png", "image/png", None);

    let (status, answer) = post_upload(&app, Some(&member.token), body()).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("FORBIDDEN")));
    let (status, _) = post_upload(&app, Some(&staff.token), body()).await;
    assert_eq!(status, 403);
    let (status, answer) = post_upload(&app, None, body()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    let list = app
        .gql(
            Some(&member.token),
            "{ mediaList { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&list), "FORBIDDEN");
    assert!(files_under(dir.path()).is_empty());
}

async fn media_is_listed_newest_first(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let first = upload(&app, &organizer.token, &png(3, 3), "1.png").await;
    app.clock.advance(chrono::Duration::seconds(1));
    let second = upload(&app, &organizer.token, &png(5, 5), "2.png").await;

    let query = "query($after: String) { mediaList(first: 1, after: $after) { totalCount edges { cursor node { id } } pageInfo { hasNextPage } } }";
    let page = app.gql(Some(&organizer.token), query, json!({})).await;
    let list = &page["data"]["mediaList"];
    assert_eq!(list["totalCount"], 2, "{page}");
    assert_eq!(list["edges"][0]["node"]["id"], second["id"]);
    assert_eq!(list["pageInfo"]["hasNextPage"], true);
    let cursor = list["edges"][0]["cursor"].clone();
    let page = app
        .gql(Some(&organizer.token), query, json!({ "after": cursor }))
        .await;
    assert_eq!(
        page["data"]["mediaList"]["edges"][0]["node"]["id"],
        first["id"]
    );
}

async fn deleting_removes_files_but_not_a_banner_in_use(backend: Backend) {
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let banner = upload(&app, &organizer.token, &png(1200, 400), "banner.png").await;
    let spare = upload(&app, &organizer.token, &png(20, 20), "spare.png").await;
    let banner_id = banner["id"].as_str().unwrap();
    let spare_id = spare["id"].as_str().unwrap();
    let mut input = event_input("Noche con banner");
    input["bannerId"] = json!(banner_id);
    input["status"] = json!("PUBLISHED");
    create_event(&app, &organizer.token, input).await;

    let events = app
        .gql(
            None,
            "{ events { edges { node { bannerUrl banner { id width height } } } } }",
            json!({}),
        )
        .await;
    let node = &events["data"]["events"]["edges"][0]["node"];
    assert_eq!(node["bannerUrl"], banner["url"], "{events}");
    assert_eq!(node["banner"]["id"], banner_id);
    assert_eq!(node["banner"]["width"], 1200);

    let refused = app
        .gql(Some(&organizer.token), DELETE, json!({ "id": banner_id }))
        .await;
    assert_eq!(error_code(&refused), "CONFLICT", "{refused}");
    assert_eq!(
        download(&app, &format!("/api/media/{banner_id}"))
            .await
            .status(),
        200
    );

    let member = app.user_with_role(Role::Member).await;
    let denied = app
        .gql(Some(&member.token), DELETE, json!({ "id": spare_id }))
        .await;
    assert_eq!(error_code(&denied), "FORBIDDEN");

    let deleted = app
        .gql(Some(&organizer.token), DELETE, json!({ "id": spare_id }))
        .await;
    assert_eq!(deleted["data"]["deleteMedia"], true, "{deleted}");
    assert!(!files_under(dir.path()).iter().any(|f| f.contains(spare_id)));
    let gone = download(&app, &format!("/api/media/{spare_id}")).await;
    assert_eq!(gone.status(), 404);
    let audit = app.audit_actions(&format!("media:{spare_id}")).await;
    assert_eq!(audit, vec!["media.upload", "media.delete"]);
}

async fn the_events_list_with_banners_costs_the_same_queries_for_5_and_50(backend: Backend) {
    use std::sync::atomic::Ordering;
    let dir = TempDir::new().unwrap();
    let app = TestApp::spawn_with(backend, local(&dir)).await;
    let organizer = app.user_with_role(Role::Organizer).await;
    let banners = [
        upload(&app, &organizer.token, &png(30, 10), "a.png").await,
        upload(&app, &organizer.token, &png(10, 30), "b.png").await,
    ];
    for i in 0..50 {
        let mut input = event_input(&format!("Banner night {i}"));
        input["bannerId"] = banners[i % 2]["id"].clone();
        input["status"] = json!("PUBLISHED");
        create_event(&app, &organizer.token, input).await;
    }

    let query = "query($n: Int) { events(first: $n) { edges { node { title ticketsRemaining bannerUrl banner { url width height } } } } }";
    let mut counts = Vec::new();
    for n in [5, 50] {
        let before = app.state.statements.load(Ordering::SeqCst);
        let answer = app.gql(None, query, json!({ "n": n })).await;
        let edges = answer["data"]["events"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), n, "{answer}");
        assert!(
            edges
                .iter()
                .all(|e| e["node"]["banner"]["width"].as_i64().is_some())
        );
        counts.push(app.state.statements.load(Ordering::SeqCst) - before);
    }
    assert_eq!(
        counts[0], counts[1],
        "statements for 5 and 50 events: {counts:?}"
    );
}

on_both_databases!(
    an_organizer_uploads_a_png_and_anyone_downloads_it,
    the_events_list_with_banners_costs_the_same_queries_for_5_and_50,
    exif_is_stripped_and_orientation_applied,
    only_real_images_are_taken,
    a_huge_declared_picture_is_refused_before_decoding,
    a_truncated_picture_is_refused_as_unreadable,
    uploads_over_the_limit_are_413,
    a_path_like_file_name_goes_nowhere,
    only_organizers_upload,
    media_is_listed_newest_first,
    deleting_removes_files_but_not_a_banner_in_use,
);

/// The S3 server `.ci/run` starts. Unreachable fails the test: never skipped.
fn s3_settings() -> (String, String, String) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    (
        var("TEST_S3_ENDPOINT", "http://127.0.0.1:9000"),
        var("TEST_S3_ACCESS_KEY", "spanglish-test"),
        var("TEST_S3_SECRET_KEY", "spanglish-test-secret"),
    )
}

async fn the_round_trip_works_on_s3(backend: Backend) {
    let (endpoint, key, secret) = s3_settings();
    let bucket = format!("spanglish-{}", uuid::Uuid::new_v4().simple());
    let client = spanglish::media::storage::s3_client(Some(&endpoint), "us-east-1", &key, &secret);
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("the S3 server at {endpoint} must be running (TEST_S3_ENDPOINT): {e:?}")
        });
    let app = TestApp::spawn_with(backend, |config| {
        config.media_storage = "s3".into();
        config.s3_endpoint = Some(endpoint.clone());
        config.s3_bucket = Some(bucket.clone());
        config.s3_region = Some("us-east-1".into());
        config.aws_access_key_id = Some(Secret::new(key.clone()));
        config.aws_secret_access_key = Some(Secret::new(secret.clone()));
    })
    .await;
    let organizer = app.user_with_role(Role::Organizer).await;

    let media = upload(&app, &organizer.token, &jpeg_with_exif(), "../phone.jpg").await;
    let id = media["id"].as_str().unwrap();
    let object = client
        .get_object()
        .bucket(&bucket)
        .key(format!("media/{id}.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_type(), Some("image/jpeg"));

    let response = download(&app, &format!("/api/media/{id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let bytes = response.bytes().await.unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"Exif"));
    assert_eq!(bytes.len() as i64, media["size"].as_i64().unwrap());
    let thumb = download(&app, &format!("/api/media/{id}/thumbnail")).await;
    assert_eq!(thumb.status(), 200);

    let deleted = app
        .gql(Some(&organizer.token), DELETE, json!({ "id": id }))
        .await;
    assert_eq!(deleted["data"]["deleteMedia"], true, "{deleted}");
    let left = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count().unwrap_or(0), 0, "{left:?}");
    assert_eq!(
        download(&app, &format!("/api/media/{id}")).await.status(),
        404
    );
}

on_both_databases!(the_round_trip_works_on_s3);
