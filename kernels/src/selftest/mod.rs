//! The engine's self-check: every op run on the CPU and on another backend with the same inputs —
//! shapes that are not multiples of the kernels' tiles, tiny and large — and the results compared
//! element by element ([`compare`]). One list of cases ([`cases`]) serves `loupe selftest` (any
//! machine, the release binary alone) and the CPU-vs-CUDA parity test, so the two cannot drift apart.

mod cases;
mod compare;

pub use cases::cases;
pub use compare::{Agreement, compare, within};

use crate::{Device, Result, Tensor};

/// The op a case runs, on inputs already moved to the device under test.
pub type CaseOp = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// What a case asks of the other backend.
enum Expect {
    /// The same values as the CPU, within a relative tolerance (0 = exactly).
    Agree { rtol: f32 },
    /// The same refusal as the CPU: both fail with an error containing this text.
    Refuse(&'static str),
}

/// One op on one set of inputs.
pub struct Case {
    /// The op family, one row of `loupe selftest`'s table.
    pub group: &'static str,
    /// What exactly runs: op, shapes, options.
    pub name: String,
    inputs: Vec<Tensor>,
    op: CaseOp,
    expect: Expect,
}

/// How a case went: on the CPU, and — where another device was given — there.
#[derive(Debug)]
pub struct Outcome {
    /// The CPU ran the op (or refused it, for a case that expects a refusal).
    pub cpu: std::result::Result<(), String>,
    /// The other device's agreement with the CPU, or why not; `None` when no device was given.
    pub device: Option<std::result::Result<Agreement, String>>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.cpu.is_ok() && self.device.as_ref().is_none_or(|d| d.is_ok())
    }
}

impl Case {
    fn new(
        group: &'static str,
        name: impl Into<String>,
        inputs: &[&Tensor],
        op: CaseOp,
        expect: Expect,
    ) -> Case {
        Case {
            group,
            name: name.into(),
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            op,
            expect,
        }
    }

    fn agree(
        group: &'static str,
        name: impl Into<String>,
        inputs: &[&Tensor],
        rtol: f32,
        op: CaseOp,
    ) -> Case {
        Case::new(group, name, inputs, op, Expect::Agree { rtol })
    }

    fn refuse(
        group: &'static str,
        name: impl Into<String>,
        inputs: &[&Tensor],
        needle: &'static str,
        op: CaseOp,
    ) -> Case {
        Case::new(group, name, inputs, op, Expect::Refuse(needle))
    }

    /// The relative tolerance asked of the other backend (`None` for an expected refusal).
    pub fn rtol(&self) -> Option<f32> {
        match self.expect {
            Expect::Agree { rtol } => Some(rtol),
            Expect::Refuse(_) => None,
        }
    }

    /// The op on copies of the inputs on `device`.
    pub fn run_on(&self, device: Device) -> Result<Tensor> {
        let inputs = self
            .inputs
            .iter()
            .map(|t| t.to_device(device))
            .collect::<Result<Vec<_>>>()?;
        (self.op)(&inputs)
    }

    /// Runs the case on the CPU and, when `device` is given, there too, and judges the pair.
    pub fn check(&self, device: Option<Device>) -> Outcome {
        let cpu = self.run_on(Device::Cpu);
        let cpu_verdict = self.verdict(&cpu);
        let device = device.map(|device| {
            let other = self.run_on(device);
            match (&self.expect, &cpu, other) {
                (Expect::Agree { rtol }, Ok(cpu), Ok(other)) => compare(cpu, &other, device, *rtol),
                (Expect::Agree { .. }, _, Err(e)) => Err(format!("failed on {device}: {e}")),
                (Expect::Agree { .. }, Err(_), Ok(_)) => {
                    Err("the CPU failed (see its column)".into())
                }
                (Expect::Refuse(needle), _, Err(e)) if e.to_string().contains(needle) => {
                    Ok(Agreement { worst: 0.0 })
                }
                (Expect::Refuse(needle), _, Err(e)) => Err(format!(
                    "refused on {device} with `{e}`, expected an error about `{needle}`"
                )),
                (Expect::Refuse(needle), _, Ok(_)) => Err(format!(
                    "accepted on {device}; the CPU refuses it (`{needle}`)"
                )),
            }
        });
        Outcome {
            cpu: cpu_verdict,
            device,
        }
    }

    fn verdict(&self, cpu: &Result<Tensor>) -> std::result::Result<(), String> {
        match (&self.expect, cpu) {
            (Expect::Agree { .. }, Ok(_)) => Ok(()),
            (Expect::Agree { .. }, Err(e)) => Err(format!("failed on the CPU: {e}")),
            (Expect::Refuse(needle), Err(e)) if e.to_string().contains(needle) => Ok(()),
            (Expect::Refuse(needle), Err(e)) => Err(format!(
                "refused on the CPU with `{e}`, expected an error about `{needle}`"
            )),
            (Expect::Refuse(needle), Ok(_)) => Err(format!(
                "accepted on the CPU; expected a refusal about `{needle}`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_cases_with_distinct_names() {
        let all = cases();
        let mut names = std::collections::BTreeSet::new();
        for case in &all {
            assert!(
                names.insert((case.group, case.name.clone())),
                "{} / {} twice",
                case.group,
                case.name
            );
        }
        let groups: std::collections::BTreeSet<_> = all.iter().map(|c| c.group).collect();
        assert!(groups.len() >= 12, "{groups:?}");
    }

    #[test]
    fn a_refusal_case_fails_when_the_op_is_accepted() {
        let x = Tensor::zeros([2], Device::Cpu).unwrap();
        let case = Case::refuse(
            "t",
            "accepts",
            &[&x],
            "out of range",
            Box::new(|t| t[0].relu()),
        );
        let outcome = case.check(Some(Device::Cpu));
        assert!(!outcome.passed());
        assert!(outcome.cpu.unwrap_err().contains("accepted on the CPU"));
    }

    #[test]
    fn a_case_whose_backends_disagree_fails() {
        // The "other device" here is the CPU with a different op: the comparison must notice.
        let x = Tensor::from_vec_f32(vec![1.0, 2.0, 3.0], [3], Device::Cpu).unwrap();
        let calls = std::cell::Cell::new(0);
        let case = Case::agree(
            "t",
            "drifts",
            &[&x],
            1e-5,
            Box::new(move |t| {
                calls.set(calls.get() + 1);
                t[0].affine(1.0 + calls.get() as f32 * 1e-3, 0.0)
            }),
        );
        let outcome = case.check(Some(Device::Cpu));
        assert!(outcome.cpu.is_ok());
        assert!(
            outcome.device.unwrap().unwrap_err().contains("element"),
            "should name the element"
        );
    }
}
