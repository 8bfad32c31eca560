//! Which layer refuses a policy, said with that layer's own words (issue 9, class 5). libbpf's
//! open needs no kernel, so these run on any machine; the kernel verifier's and libbpf's later
//! refusals are checked in the VM (`differential_admission` in upsched-vm-scenarios).

use upsched_kernel::{HostError, PolicyLayer, libbpf_open_verdict};

#[test]
fn libbpf_open_refusals_name_libbpf_and_its_reason() {
    for (name, reason) in [
        ("cross_section_call", "bad call relo"),
        ("symtab_entsize", "failed to open object"),
    ] {
        let error = libbpf_open_verdict(upsched_testdata::object(name))
            .expect_err("libbpf refuses it at open");
        assert_eq!(
            error.policy_layer(),
            Some(PolicyLayer::LibbpfOpen),
            "{name}: {error}"
        );
        let text = error.to_string();
        let first_line = text.lines().next().unwrap_or_default();
        assert!(
            first_line.starts_with("libbpf could not open the policy object"),
            "{name}: {text}"
        );
        assert!(first_line.contains(reason), "{name}: {text}");
        assert!(!text.contains("kernel verifier"), "{name}: {text}");
        let HostError::PolicyOpen { message, .. } = &error else {
            unreachable!("the layer says open");
        };
        assert!(message.contains(reason), "{name}: {message}");
    }
}

#[test]
fn libbpf_opens_every_example_policy() {
    for (name, bytes) in upsched_policies::POLICIES {
        libbpf_open_verdict(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
