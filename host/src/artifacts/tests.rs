use std::path::Path;

use loupe_kernels::{Device, Tensor};

use super::*;

fn dir() -> (tempfile::TempDir, ArtifactDir) {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = ArtifactDir::new(tmp.path().join("artifacts"));
    (tmp, artifacts)
}

fn f32_tensor(data: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec_f32(data, shape, Device::Cpu).unwrap()
}

fn strings(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| s.to_string()).collect()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_no_temp_files(dir: &Path) {
    let temps: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

#[test]
fn accepted_names_map_under_the_root() {
    let (_tmp, a) = dir();
    let cases = [
        ("scores.json", ArtifactKind::Json, "scores.json"),
        ("a/b.json", ArtifactKind::Json, "a/b.json"),
        ("a/b/c/d.csv", ArtifactKind::Csv, "a/b/c/d.csv"),
        (
            "Layer_0-head.3.png",
            ArtifactKind::Png,
            "Layer_0-head.3.png",
        ),
        (
            "x.tar.safetensors",
            ArtifactKind::Tensors,
            "x.tar.safetensors",
        ),
        ("a..b/c.json", ArtifactKind::Json, "a..b/c.json"),
        ("j.json.json", ArtifactKind::Json, "j.json.json"),
        (
            "features/view.html",
            ArtifactKind::Text,
            "features/view.html",
        ),
        ("notes.md", ArtifactKind::Text, "notes.md"),
    ];
    for (name, kind, rel) in cases {
        assert_eq!(
            a.path_for(name, kind).unwrap(),
            a.root().join(rel),
            "{name}"
        );
    }
    let longest = format!("{}.json", "x".repeat(MAX_NAME_LEN - 5));
    assert!(a.path_for(&longest, ArtifactKind::Json).is_ok());
    // path_for touches nothing on disk.
    assert!(!a.root().exists());
}

fn rejected_names() -> Vec<(String, &'static str)> {
    vec![
        ("../../x.json".into(), "`..` is not allowed"),
        ("..".into(), "`..` is not allowed"),
        ("/etc/x.json".into(), "absolute"),
        ("a/../b.json".into(), "`..` is not allowed"),
        ("./a.json".into(), "`.` is not allowed"),
        ("a\\b.json".into(), "contains `\\`"),
        ("..\\x.json".into(), "contains `\\`"),
        ("".into(), "the name is empty"),
        (".json".into(), "starts with `.`"),
        ("a/.json".into(), "starts with `.`"),
        (".hidden/a.json".into(), "starts with `.`"),
        ("a//b.json".into(), "empty component"),
        ("a/b.json/".into(), "empty component"),
        (format!("{}.json", "x".repeat(MAX_NAME_LEN)), "bytes long"),
        ("a/b/c/d/e.json".into(), "at most 4"),
        ("x.txt".into(), "a json artifact's name must end in .json"),
        ("x.JSON".into(), "must end in .json"),
        ("x.json.txt".into(), "must end in .json"),
        ("x.json\0".into(), "NUL"),
        ("a\0/../../x.json".into(), "NUL"),
        ("a b.json".into(), "contains ` `"),
        ("a:b.json".into(), "contains `:`"),
        ("caf\u{e9}.json".into(), "contains `\\u{e9}`"),
        ("a\n.json".into(), "contains `\\n`"),
        ("~/x.json".into(), "contains `~`"),
        ("C:x.json".into(), "contains `:`"),
    ]
}

#[test]
fn rejected_names_say_why() {
    let (_tmp, a) = dir();
    for (name, why) in rejected_names() {
        let err = a.path_for(&name, ArtifactKind::Json).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ArtifactError::InvalidName { .. }), "{name:?}");
        assert!(msg.contains(why), "{name:?}: {msg}");
        assert!(msg.starts_with("artifact `"), "{msg}");
        assert!(!msg.contains('\n') && !msg.contains('\0'), "{msg:?}");
    }
    assert_eq!(
        a.path_for("x.txt", ArtifactKind::Json)
            .unwrap_err()
            .to_string(),
        "artifact `x.txt`: a json artifact's name must end in .json"
    );
    assert!(
        a.path_for("x.json", ArtifactKind::Tensors)
            .unwrap_err()
            .to_string()
            .contains("a safetensors artifact's name must end in .safetensors")
    );
    // A huge name is shortened in the message.
    let huge = "y".repeat(100_000);
    let msg = a
        .path_for(&huge, ArtifactKind::Json)
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 300, "{msg}");
    assert!(msg.contains("100000 bytes"), "{msg}");
}

#[test]
fn rejected_names_create_nothing_anywhere() {
    let (tmp, a) = dir();
    let t = f32_tensor(vec![0.5; 4], &[2, 2]);
    for (name, _) in rejected_names() {
        let with_ext = |ext: &str| name.replace(".json", ext);
        assert!(a.write_json(&name, "{}").is_err(), "{name:?}");
        let csv = with_ext(".csv");
        assert!(a.write_csv(&csv, &strings(&["a"]), &[]).is_err(), "{csv:?}");
        let png = with_ext(".png");
        assert!(a.write_png(&png, &t).is_err(), "{png:?}");
        let st = with_ext(".safetensors");
        let tensors = [("t".to_string(), t.clone())];
        assert!(a.write_tensors(&st, &tensors).is_err(), "{st:?}");
    }
    assert_eq!(files_under(tmp.path()), Vec::<String>::new());
    assert_eq!(a.bytes_written(), 0);
    // With the root already there, still nothing outside it or in it.
    std::fs::create_dir_all(a.root()).unwrap();
    for (name, _) in rejected_names() {
        assert!(a.write_json(&name, "{}").is_err());
    }
    assert_eq!(files_under(tmp.path()), vec!["artifacts/".to_string()]);
}

#[test]
fn json_is_validated_and_pretty_printed_in_nested_dirs() {
    let (tmp, a) = dir();
    let n = a
        .write_json("a/b.json", r#"{"x": [1, 2], "y": "z"}"#)
        .unwrap();
    let written = std::fs::read_to_string(a.root().join("a/b.json")).unwrap();
    assert_eq!(
        written,
        "{\n  \"x\": [\n    1,\n    2\n  ],\n  \"y\": \"z\"\n}\n"
    );
    assert_eq!(n, written.len() as u64);
    assert_eq!(a.bytes_written(), n);
    assert_eq!(
        files_under(tmp.path()),
        vec!["artifacts/", "artifacts/a/", "artifacts/a/b.json"]
    );

    let err = a.write_json("bad.json", "{\"x\": 1,\n  }").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ArtifactError::InvalidJson { .. }));
    assert!(
        msg.starts_with("artifact `bad.json`: not valid JSON ("),
        "{msg}"
    );
    assert!(msg.contains("line 2 column 3"), "{msg}");
    for bad in ["", "{} {}", "nope", "[1,"] {
        assert!(a.write_json("bad.json", bad).is_err(), "{bad:?}");
    }
    assert!(!a.root().join("bad.json").exists());
    assert_eq!(a.bytes_written(), n);
    assert_no_temp_files(tmp.path());
}

#[test]
fn overwrite_replaces_the_file_and_counts_again() {
    let (_tmp, a) = dir();
    let n1 = a.write_json("r.json", "[1, 2, 3]").unwrap();
    let n2 = a.write_json("r.json", "7").unwrap();
    assert_eq!(
        std::fs::read_to_string(a.root().join("r.json")).unwrap(),
        "7\n"
    );
    assert_eq!(a.bytes_written(), n1 + n2);
}

#[test]
fn csv_quotes_exactly_as_rfc_4180() {
    let (tmp, a) = dir();
    let header = strings(&["name", "value, with comma", "note"]);
    let rows = vec![
        strings(&["plain", "1.5", ""]),
        strings(&["say \"hi\"", "a\nb", "cr\rhere"]),
        strings(&["crlf\r\nend", "\"", " spaced "]),
    ];
    let n = a.write_csv("t/table.csv", &header, &rows).unwrap();
    let written = std::fs::read(a.root().join("t/table.csv")).unwrap();
    let expected = concat!(
        "name,\"value, with comma\",note\r\n",
        "plain,1.5,\r\n",
        "\"say \"\"hi\"\"\",\"a\nb\",\"cr\rhere\"\r\n",
        "\"crlf\r\nend\",\"\"\"\", spaced \r\n",
    );
    assert_eq!(String::from_utf8(written.clone()).unwrap(), expected);
    assert_eq!(n, written.len() as u64);

    // A lone empty field is written as "" so the record is not a blank line.
    a.write_csv(
        "one.csv",
        &strings(&["only"]),
        &[strings(&[""]), strings(&["x"])],
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(a.root().join("one.csv")).unwrap(),
        "only\r\n\"\"\r\nx\r\n"
    );
    // A header alone is a valid file.
    a.write_csv("empty.csv", &strings(&["a", "b"]), &[])
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(a.root().join("empty.csv")).unwrap(),
        "a,b\r\n"
    );
    assert_no_temp_files(tmp.path());
}

#[test]
fn csv_row_length_mismatch_names_the_row() {
    let (tmp, a) = dir();
    let header = strings(&["a", "b", "c"]);
    let rows = vec![
        strings(&["1", "2", "3"]),
        strings(&["1", "2", "3"]),
        strings(&["1", "2"]),
    ];
    let err = a.write_csv("m.csv", &header, &rows).unwrap_err();
    assert!(matches!(
        err,
        ArtifactError::CsvRowLength {
            row: 2,
            got: 2,
            expected: 3,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "artifact `m.csv`: row 2 has 2 fields but the header has 3; give every row exactly one field per header column"
    );
    let err = a.write_csv("m.csv", &[], &[]).unwrap_err();
    assert!(matches!(err, ArtifactError::CsvEmptyHeader { .. }));
    assert_eq!(files_under(tmp.path()), Vec::<String>::new());
}

fn decode_png(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap();
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap()
}

#[test]
fn png_grayscale_round_trip_with_clamping_and_nan() {
    let (tmp, a) = dir();
    // 2 x 4: row 0 = 0, 1, 0.5, 0.2; row 1 = -3, 7, NaN, +inf
    let values = vec![0.0, 1.0, 0.5, 0.2, -3.0, 7.0, f32::NAN, f32::INFINITY];
    let n = a
        .write_png("maps/gray.png", &f32_tensor(values, &[2, 4]))
        .unwrap();
    let path = a.root().join("maps/gray.png");
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    let img = decode_png(&path);
    assert_eq!(img.color(), image::ColorType::L8);
    let img = img.to_luma8();
    assert_eq!(img.dimensions(), (4, 2));
    // 0.5 * 255 = 127.5 rounds to 128; 0.2 * 255 = 51.
    assert_eq!(img.as_raw(), &vec![0, 255, 128, 51, 0, 255, 0, 255]);
    assert_no_temp_files(tmp.path());
}

#[test]
fn png_rgb_round_trip() {
    let (_tmp, a) = dir();
    // 1 x 2 pixels: (1, 0, 0.25) and (NaN, 0.999, -0.1)
    let values = vec![1.0, 0.0, 0.25, f32::NAN, 0.999, -0.1];
    a.write_png("rgb.png", &f32_tensor(values, &[1, 2, 3]))
        .unwrap();
    let img = decode_png(&a.root().join("rgb.png"));
    assert_eq!(img.color(), image::ColorType::Rgb8);
    let img = img.to_rgb8();
    assert_eq!(img.dimensions(), (2, 1));
    assert_eq!(img.as_raw(), &vec![255, 0, 64, 0, 255, 0]);
}

#[test]
fn png_rejects_bad_shapes_and_dtypes() {
    let (tmp, a) = dir();
    let cases = [
        f32_tensor(vec![0.0; 4], &[4]),
        f32_tensor(vec![0.0; 8], &[2, 2, 2]),
        f32_tensor(vec![0.0; 16], &[2, 2, 4]),
        f32_tensor(vec![0.0; 12], &[1, 2, 2, 3]),
        f32_tensor(vec![], &[0, 3]),
        f32_tensor(vec![], &[3, 0, 3]),
        f32_tensor(vec![0.0; MAX_IMAGE_SIDE + 1], &[1, MAX_IMAGE_SIDE + 1]),
        f32_tensor(vec![1.0], &[]),
    ];
    for t in &cases {
        let err = a.write_png("x.png", t).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ArtifactError::BadImage { .. }), "{msg}");
        assert!(msg.contains(&format!("{:?}", t.dims())), "{msg}");
        assert!(
            msg.starts_with("artifact `x.png`: cannot write a tensor of dtype f32 and shape"),
            "{msg}"
        );
    }
    let ids = Tensor::from_vec_i32(vec![0; 4], &[2, 2][..], Device::Cpu).unwrap();
    let msg = a.write_png("x.png", &ids).unwrap_err().to_string();
    assert!(msg.contains("dtype i32 and shape [2, 2]"), "{msg}");
    assert_eq!(files_under(tmp.path()), Vec::<String>::new());
}

#[test]
fn safetensors_round_trip_and_exact_size() {
    let (tmp, a) = dir();
    let ids = Tensor::from_vec_i32(vec![1, -2, 3], &[3][..], Device::Cpu).unwrap();
    let tensors = vec![
        (
            "z.weights".to_string(),
            f32_tensor(vec![1.0, 2.5, -3.0, 4.0, 5.0, 6.0], &[2, 3]),
        ),
        ("ids".to_string(), ids),
        ("a/scalar".to_string(), f32_tensor(vec![0.125], &[])),
        ("empty".to_string(), f32_tensor(vec![], &[0, 4])),
    ];
    let n = a.write_tensors("run/out.safetensors", &tensors).unwrap();
    let path = a.root().join("run/out.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        n,
        bytes.len() as u64,
        "the size charged is the size on disk"
    );
    assert_eq!(a.bytes_written(), n);

    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names, vec!["a/scalar", "empty", "ids", "z.weights"]);
    let w = st.tensor("z.weights").unwrap();
    assert_eq!(w.dtype(), safetensors::Dtype::F32);
    assert_eq!(w.shape(), &[2, 3]);
    let floats: Vec<f32> = w
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vec![1.0, 2.5, -3.0, 4.0, 5.0, 6.0]);
    let i = st.tensor("ids").unwrap();
    assert_eq!(i.dtype(), safetensors::Dtype::I32);
    let ints: Vec<i32> = i
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(ints, vec![1, -2, 3]);
    assert_eq!(st.tensor("a/scalar").unwrap().shape(), &[] as &[usize]);
    assert_eq!(st.tensor("empty").unwrap().shape(), &[0, 4]);

    // The size prediction holds for other name lengths and counts too (header padding varies).
    for k in 0..10 {
        let ts: Vec<(String, Tensor)> = (0..k)
            .map(|j| {
                (
                    format!("t{}", "x".repeat(j * 3)),
                    f32_tensor(vec![0.0; j + 1], &[j + 1]),
                )
            })
            .collect();
        let name = format!("s{k}.safetensors");
        let n = a.write_tensors(&name, &ts).unwrap();
        assert_eq!(
            n,
            std::fs::metadata(a.root().join(&name)).unwrap().len(),
            "k={k}"
        );
    }
    assert_no_temp_files(tmp.path());
}

#[test]
fn safetensors_rejects_bad_tensor_names() {
    let (tmp, a) = dir();
    let t = f32_tensor(vec![1.0], &[1]);
    let err = a
        .write_tensors(
            "d.safetensors",
            &[
                ("a".into(), t.clone()),
                ("b".into(), t.clone()),
                ("a".into(), t.clone()),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, ArtifactError::BadTensors { .. }));
    assert_eq!(
        err.to_string(),
        "artifact `d.safetensors`: the tensor name `a` appears more than once; give every tensor a unique name"
    );
    let msg = a
        .write_tensors(
            "d.safetensors",
            &[("ok".into(), t.clone()), (String::new(), t.clone())],
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tensor 1 has an empty name"), "{msg}");
    let msg = a
        .write_tensors("d.safetensors", &[("__metadata__".into(), t)])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("reserved"), "{msg}");
    assert_eq!(files_under(tmp.path()), Vec::<String>::new());
    assert_eq!(a.bytes_written(), 0);
}

#[test]
fn budget_is_enforced_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ArtifactDir::with_budget(tmp.path().join("artifacts"), 100);
    assert_eq!(a.budget(), 100);
    assert_eq!(ArtifactDir::new(tmp.path().into()).budget(), 4 << 30);

    let n = a.write_json("a.json", "[1]").unwrap(); // "[\n  1\n]\n" = 8 bytes
    assert_eq!(n, 8);
    let big = format!("\"{}\"", "x".repeat(98)); // 100 bytes + newline
    let err = a.write_json("big.json", &big).unwrap_err();
    assert!(matches!(
        err,
        ArtifactError::BudgetExceeded {
            bytes: 101,
            budget: 100,
            used: 8,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "artifact `big.json`: writing 101 bytes would exceed the run's artifact budget of 100 bytes (8 bytes already written); write less"
    );
    assert!(!a.root().join("big.json").exists());
    assert_eq!(a.bytes_written(), 8);

    // Exactly filling the budget is allowed; one byte more is not.
    let fill = format!("\"{}\"", "x".repeat(89)); // 91 bytes + newline = 92
    assert_eq!(a.write_json("fill.json", &fill).unwrap(), 92);
    assert_eq!(a.bytes_written(), 100);
    assert!(matches!(
        a.write_json("one.json", "1"),
        Err(ArtifactError::BudgetExceeded { .. })
    ));
    let t = f32_tensor(vec![1.0], &[1]);
    assert!(matches!(
        a.write_png("p.png", &f32_tensor(vec![1.0], &[1, 1])),
        Err(ArtifactError::BudgetExceeded { .. })
    ));
    assert!(matches!(
        a.write_tensors("t.safetensors", &[("t".into(), t)]),
        Err(ArtifactError::BudgetExceeded { .. })
    ));
    assert!(matches!(
        a.write_csv("c.csv", &strings(&["a"]), &[]),
        Err(ArtifactError::BudgetExceeded { .. })
    ));
    assert_eq!(files_under(a.root()), vec!["a.json", "fill.json"]);
    assert_no_temp_files(tmp.path());
}

#[test]
fn failed_writes_leave_no_temp_files_and_refund_the_budget() {
    let (tmp, a) = dir();
    // A directory where the file should go: the rename fails after the temp file is written.
    std::fs::create_dir_all(a.root().join("taken.json")).unwrap();
    let err = a.write_json("taken.json", "{}").unwrap_err();
    assert!(matches!(err, ArtifactError::Io { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("artifact `taken.json`: cannot write it ("),
        "{msg}"
    );
    assert!(
        !msg.contains(&tmp.path().display().to_string()),
        "no host paths: {msg}"
    );
    // A file where a directory should go: creating the parent fails.
    a.write_json("f.json", "{}").unwrap();
    let used = a.bytes_written();
    assert!(matches!(
        a.write_json("f.json/x.json", "{}"),
        Err(ArtifactError::Io { .. })
    ));
    let t = f32_tensor(vec![1.0], &[1]);
    assert!(matches!(
        a.write_tensors("f.json/x.safetensors", &[("t".into(), t.clone())]),
        Err(ArtifactError::Io { .. })
    ));
    std::fs::create_dir_all(a.root().join("d.safetensors")).unwrap();
    let err = a
        .write_tensors("d.safetensors", &[("t".into(), t)])
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Io { .. }), "{err}");
    assert!(
        !err.to_string().contains(&tmp.path().display().to_string()),
        "{err}"
    );
    assert_eq!(a.bytes_written(), used);
    assert_no_temp_files(tmp.path());
    assert_eq!(
        files_under(a.root()),
        vec!["d.safetensors/", "f.json", "taken.json/"]
    );
}

#[test]
fn concurrent_writers_share_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ArtifactDir::with_budget(tmp.path().join("artifacts"), 8 * 10);
    // Each write is 8 bytes ("[\n  1\n]\n"); 40 attempts, room for 10.
    let ok = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let a = &a;
                s.spawn(move || {
                    (0..5)
                        .filter(|i| a.write_json(&format!("t{t}/{i}.json"), "[1]").is_ok())
                        .count()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(ok, 10);
    assert_eq!(a.bytes_written(), 80);
    assert_no_temp_files(tmp.path());
}

#[test]
fn one_byte_over_the_name_limit_is_rejected() {
    let (_tmp, a) = dir();
    let name = format!("{}.json", "x".repeat(MAX_NAME_LEN - 4));
    assert_eq!(name.len(), MAX_NAME_LEN + 1);
    let msg = a
        .path_for(&name, ArtifactKind::Json)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("201 bytes long; the limit is 200"), "{msg}");
}

#[test]
fn text_is_written_as_given_under_a_text_extension() {
    let (_tmp, a) = dir();
    let page = "<!doctype html><title>é</title>\n";
    assert_eq!(a.write_text("view.html", page).unwrap(), page.len() as u64);
    assert_eq!(
        fs::read_to_string(a.root().join("view.html")).unwrap(),
        page
    );
    let e = a.write_text("view.exe", "x").unwrap_err().to_string();
    assert!(
        e.contains("must end in .html or .md or .txt or .svg"),
        "{e}"
    );
}
