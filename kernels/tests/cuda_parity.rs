//! CPU-vs-CUDA parity: every engine op runs on both backends with the same inputs — shapes that are not
//! multiples of the kernels' tiles, tiny and large — and the results must agree. The cases and their
//! tolerances live in the engine (`loupe_kernels::selftest`), shared with `loupe selftest`, so the
//! release binary checks a GPU exactly as this test does. Without a usable GPU each test says it was
//! skipped — unless `LOUPE_REQUIRE_GPU=1`, which makes a missing GPU a failure
//! (`scripts/gpu-tests.sh` sets it).

use loupe_kernels::{Device, Error, Tensor, cuda, selftest};

/// CUDA device 0, or `None` after saying why the test is skipped.
fn gpu() -> Option<Device> {
    match cuda::unavailable_reason(0) {
        None => Some(Device::Cuda(0)),
        Some(why) if std::env::var_os("LOUPE_REQUIRE_GPU").is_some_and(|v| v == "1") => {
            panic!("LOUPE_REQUIRE_GPU=1 but no usable CUDA device: {why}")
        }
        Some(why) => {
            eprintln!("skipped: no usable CUDA device ({why})");
            None
        }
    }
}

fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::randn(dims, 0.0, 1.0, seed, Device::Cpu).unwrap()
}

/// Every case of the self-test: the GPU agrees with the CPU on all of them. Failures are collected,
/// so one run names every op that is off.
#[test]
fn every_op_agrees_with_the_cpu() {
    let Some(device) = gpu() else { return };
    let cases = selftest::cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let outcome = case.check(Some(device));
            let why = match (&outcome.cpu, &outcome.device) {
                (Err(e), _) | (_, Some(Err(e))) => e.clone(),
                _ => return None,
            };
            Some(format!("{} / {}: {why}", case.group, case.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Device memory is counted while tensors live and released when they drop; a request the GPU cannot
/// hold is an error value naming the op and the size, not a crash.
#[test]
fn memory_is_counted_and_exhaustion_is_an_error() {
    let Some(device) = gpu() else { return };
    let before = cuda::memory_use(0).map_or(0, |m| m.in_use);
    let t = Tensor::zeros([1 << 20], device).unwrap();
    let during = cuda::memory_use(0).unwrap();
    assert!(
        during.in_use >= before + (4 << 20),
        "in use {} after allocating 4 MiB (before {before})",
        during.in_use
    );
    assert!(during.total > 0 && during.peak >= during.in_use);
    drop(t);
    assert!(cuda::memory_use(0).unwrap().in_use <= during.in_use - (4 << 20));

    // 4 TiB: more than any GPU has.
    match Tensor::zeros([1usize << 40], device) {
        Err(Error::OutOfDeviceMemory { op, bytes, .. }) => {
            assert_eq!(op, "full");
            assert_eq!(bytes, 4usize << 40);
        }
        Err(other) => panic!("expected out-of-memory, got {other}"),
        Ok(_) => panic!("a 4 TiB tensor should not fit"),
    }
    // The device still works afterwards.
    let x = Tensor::ones([3], device).unwrap();
    assert_eq!(x.to_vec_f32().unwrap(), vec![1.0; 3]);
}

#[test]
fn tensors_move_between_devices() {
    let Some(device) = gpu() else { return };
    let x = randn(&[5, 7], 160);
    let back = x.to_device(device).unwrap().to_device(Device::Cpu).unwrap();
    assert_eq!(back.to_vec_f32().unwrap(), x.to_vec_f32().unwrap());
    let n = Tensor::from_vec_i32(vec![1, -2, 3], [3], Device::Cpu).unwrap();
    let back = n.to_device(device).unwrap();
    assert_eq!(back.device(), device);
    assert_eq!(back.to_vec_i32().unwrap(), vec![1, -2, 3]);
    let mixed = x.to_device(device).unwrap().add(&x);
    assert!(matches!(mixed, Err(Error::DeviceMismatch { .. })));
}
