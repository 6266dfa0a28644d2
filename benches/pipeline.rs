//! Microbenchmarks of the pure request pipeline, with the requests browsers send:
//! parse and admit the head, normalise the path, look it up in the file cache, and write
//! the response prefix; and the real compose step (`fserve::server::compose`) for a cached
//! hit, a 304 and a range. The I/O around it is measured by `benches/vs-nginx.sh`.

use std::hint::black_box;
use std::rc::Rc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fserve::fs::{Cache, path};
use fserve::http::response::Common;
use fserve::http::{Connection, HttpDate, Status, request, response};
use fserve::server::compose::{self, Context, FileBody, Representation, Segments};

/// A request head as Chrome sends it for a stylesheet.
const CHROME: &[u8] = b"GET /assets/css/site.3f9a1c.css HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"130\", \"Google Chrome\";v=\"130\", \"Not?A_Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Dest: style\r\n\
Referer: https://www.example.com/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
If-None-Match: \"6740a1b2-1f3a\"\r\n\
If-Modified-Since: Fri, 22 Nov 2024 10:00:00 GMT\r\n\r\n";

/// What wrk sends.
const WRK: &[u8] = b"GET /1k.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn pipeline(c: &mut Criterion) {
    let mut cache: Cache<Vec<u8>> = Cache::new(64 << 20);
    let mut key = Vec::new();
    for p in ["/assets/css/site.3f9a1c.css", "/1k.html"] {
        path::normalize(p.as_bytes(), &mut key).unwrap();
        cache.insert(&key, Rc::new(vec![0u8; 1024]), 1024, 0);
    }
    let date = HttpDate::from_unix(1_795_000_000);
    let mut out = Vec::with_capacity(4096);

    let mut group = c.benchmark_group("pipeline");
    for (name, raw) in [("chrome", CHROME), ("wrk", WRK)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = request::parse(black_box(raw), 16 * 1024).unwrap().unwrap();
                path::normalize(req.path, &mut key).unwrap();
                let hit = cache.get(&key, 1).unwrap();
                out.clear();
                let c = Common {
                    date: &date,
                    conn: Connection::for_request(&req, false),
                    site: b"",
                    vary_accept: false,
                };
                response::write_prefix(&mut out, Status::Ok, &c);
                black_box((hit.value.len(), out.len()))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("parts");
    group.bench_function("parse_chrome", |b| {
        b.iter(|| request::parse(black_box(CHROME), 16 * 1024).unwrap())
    });
    group.bench_function("normalize", |b| {
        b.iter(|| {
            path::normalize(black_box(b"/assets/css/../css/site%2e3f9a1c.css"), &mut key).unwrap()
        })
    });
    group.bench_function("http_date", |b| {
        b.iter(|| HttpDate::from_unix(black_box(1_795_000_000)))
    });
    group.finish();
}

/// The compose step for one 1 KiB file held in memory, as a warm connection runs it.
fn compose_step(c: &mut Criterion) {
    let rep = Representation {
        content_type: "text/css".into(),
        len: 1024,
        mtime: 1_732_269_600,
        etag: b"\"6740a1b2-400\"".as_slice().into(),
        cache_fields: b"Cache-Control: public, max-age=31536000, immutable\r\n"
            .as_slice()
            .into(),
        fields: b"Cache-Control: public, max-age=31536000, immutable\r\n"
            .as_slice()
            .into(),
    };
    let mut bytes = Vec::new();
    response::write_file_fields(&mut bytes, &rep.file_fields());
    let head_len = bytes.len();
    bytes.extend_from_slice(&[b'x'; 1024]);
    let reply = compose::Reply::File {
        status: Status::Ok,
        file: FileBody {
            rep: &rep,
            bytes: &bytes,
            head_len,
            from_file: false,
            body: None,
        },
    };
    let date = HttpDate::from_unix(1_795_000_000);
    let boundary = || *b"0123456789abcdefghij";
    let ctx = Context {
        date: &date,
        site: b"",
        stopping: false,
        cors: false,
        vary_accept: false,
        boundary: &boundary,
    };
    let mut out = Vec::with_capacity(4096);
    let mut segs = Segments::new();
    let cases: [(&str, &[u8]); 3] = [
        ("hit", WRK),
        (
            "not_modified",
            b"GET /1k.html HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"6740a1b2-400\"\r\n\r\n",
        ),
        (
            "range",
            b"GET /1k.html HTTP/1.1\r\nHost: a\r\nRange: bytes=100-199\r\n\r\n",
        ),
    ];
    let mut group = c.benchmark_group("compose");
    for (name, raw) in cases {
        let req = request::parse(raw, 16 * 1024).unwrap().unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let done = compose::compose(black_box(&req), &reply, &ctx, &mut out, &mut segs);
                black_box((done, segs.as_slice().len(), out.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, compose_step);
criterion_main!(benches);
