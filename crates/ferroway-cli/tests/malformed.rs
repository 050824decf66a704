//! Malformed pipeline files: each gives the message a user needs — file, line, column, option
//! path, what is wrong and what would be right — and none panics.

mod support;

use support::*;

const SOURCE: &str = "[sources.in]\ntype = \"generator\"\ncount = 1\n";
const SINK: &str = "[sinks.out]\ntype = \"stdout\"\n";

/// `ferroway validate` of `text`: exit code 2 and stderr containing each of `expected`.
fn rejects(name: &str, text: &str, expected: &[&str]) {
    let dir = Scratch::new("malformed");
    let file = dir.write(&format!("{name}.toml"), text);
    let out = run(&dir.0, &["validate", file.to_str().unwrap()], 30);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{name}: panicked:\n{err}");
    assert_eq!(out.status.code(), Some(2), "{name}: exit code, stderr:\n{err}");
    for e in expected {
        assert!(err.contains(e), "{name}: expected\n  {e}\nin\n{err}");
    }
}

#[test]
fn wrong_type_of_value() {
    rejects(
        "wrong-type",
        &format!("{SOURCE}\n[sinks.out]\ntype = \"stdout\"\nbatch_size = \"ten\"\n"),
        &["wrong-type.toml:7:14: sinks.out.batch_size: invalid type: string \"ten\", expected i64"],
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    rejects(
        "unknown-key",
        &format!("{SOURCE}\n[sinks.out]\ntype = \"stdout\"\nbatch_sise = 10\n"),
        &[
            "unknown-key.toml:7:1: sinks.out.batch_sise: unknown option `batch_sise` (did you mean `batch_size`?); this table takes: type, batch_size, batch_timeout, concurrency, route",
        ],
    );
}

#[test]
fn unknown_connector_option_lists_the_valid_ones() {
    rejects(
        "unknown-option",
        &format!("[sources.in]\ntype = \"file\"\npaht = \"x\"\n\n{SINK}"),
        &[
            "unknown-option.toml:3:1: sources.in.paht: unknown option `paht` (did you mean `path`?); this table takes: type, path, follow, poll_interval, checkpoint_dir, checkpoint_interval, on_failed",
        ],
    );
}

#[test]
fn unknown_top_level_key() {
    rejects(
        "unknown-top",
        &format!("shutdown_timout = \"5s\"\n{SOURCE}\n{SINK}"),
        &["unknown-top.toml:1:1: shutdown_timout: unknown option `shutdown_timout` (did you mean `shutdown_timeout`?)"],
    );
}

#[test]
fn missing_source() {
    rejects(
        "no-source",
        SINK,
        &[
            "no-source.toml: sources: a pipeline needs at least one source: add a [sources.in] table with a `type` (one of: file, stdin, generator",
        ],
    );
}

#[test]
fn missing_sink() {
    rejects(
        "no-sink",
        SOURCE,
        &[
            "no-sink.toml: sinks: a pipeline needs at least one sink: add a [sinks.out] table with a `type` (one of: file, stdout",
        ],
    );
}

#[test]
fn unknown_connector_type() {
    rejects(
        "unknown-type",
        &format!("[sources.in]\ntype = \"kafak\"\n\n{SINK}"),
        &[
            "unknown-type.toml:2:8: sources.in.type: unknown source type `kafak` (did you mean `kafka`?); known source types: file, stdin, generator",
        ],
    );
}

#[test]
fn missing_type() {
    rejects(
        "no-type",
        &format!("[sources.in]\npath = \"x\"\n\n{SINK}"),
        &["no-type.toml:1:1: sources.in: missing `type`: which source (one of: file, stdin, generator"],
    );
}

#[test]
fn bad_duration() {
    rejects(
        "bad-duration",
        &format!("{SOURCE}\n[sinks.out]\ntype = \"stdout\"\nbatch_timeout = \"5 parsecs\"\n"),
        &["bad-duration.toml:7:17: sinks.out.batch_timeout:"],
    );
}

#[test]
fn zero_batch_size() {
    rejects(
        "zero-batch",
        &format!("{SOURCE}\n[sinks.out]\ntype = \"stdout\"\nbatch_size = 0\n"),
        &["zero-batch.toml:7:14: sinks.out.batch_size: must be at least 1"],
    );
}

#[test]
fn invalid_jq_program_points_into_it() {
    rejects(
        "bad-jq",
        &format!("{SOURCE}\n[[steps]]\nmap = '.a | frobnicate(1)'\n\n{SINK}"),
        &["bad-jq.toml:6:13: steps[0].map: invalid jq program: undefined filter `frobnicate/1`"],
    );
}

#[test]
fn a_step_with_two_kinds() {
    rejects(
        "two-kinds",
        &format!("{SOURCE}\n[[steps]]\nfilter = '.a'\nmap = '.b'\n\n{SINK}"),
        &[
            "two-kinds.toml:5:1: steps[0]: a step is exactly one of `filter`, `map` or `dead_letter`; this one has `filter` and `map` (make one step of each)",
        ],
    );
}

#[test]
fn an_unreachable_sink_after_a_catch_all() {
    rejects(
        "unreachable-sink",
        &format!(
            "{SOURCE}\n[sinks.all]\ntype = \"stdout\"\n\n[sinks.errors]\ntype = \"stdout\"\nroute = '.level == \"error\"'\n"
        ),
        &["unreachable-sink.toml:8:1: sinks.errors: never reached: sink `all` before it has no `route`"],
    );
}

#[test]
fn invalid_toml() {
    rejects(
        "invalid-toml",
        "[sources.in\ntype = \"generator\"\n",
        &["invalid-toml.toml:1:12: invalid TOML:"],
    );
}

#[test]
fn an_undefined_environment_variable() {
    rejects(
        "env",
        &format!("[sources.in]\ntype = \"file\"\npath = \"${{FERROWAY_TEST_SURELY_UNSET}}\"\n\n{SINK}"),
        &[
            "env.toml:3:9: environment variable `FERROWAY_TEST_SURELY_UNSET` is not set (set it, or write `${FERROWAY_TEST_SURELY_UNSET:-default}` for a default)",
        ],
    );
}

#[test]
fn a_bad_partition_by() {
    rejects(
        "partition",
        &format!("partition_by = \"user\"\n{SOURCE}\n{SINK}"),
        &[
            "partition.toml:1:16: partition_by: `user` is neither \"key\" (the record's key) nor a JSON field path such as \".user.id\"",
        ],
    );
}

#[test]
fn a_test_naming_a_sink_that_does_not_exist() {
    rejects(
        "test-sink",
        &format!("{SOURCE}\n{SINK}\n[[tests]]\nname = \"t\"\ninput = ['{{}}']\noutput = {{ outt = ['{{}}'] }}\n"),
        &["test-sink.toml:11:19: tests[0].output.outt: no sink named `outt` (did you mean `out`?); the sinks are: out"],
    );
}

#[test]
fn kafka_options_are_checked_too() {
    rejects(
        "kafka",
        &format!("[sources.in]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"t\"\n\n{SINK}"),
        &["kafka.toml:1:1: sources.in: missing field `group_id`"],
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    rejects(
        "many",
        "[sources.in]\ntype = \"generator\"\ncount = -1\n\n[sinks.out]\ntype = \"stdout\"\nbatch_size = 0\n",
        &[
            "many.toml:3:9: sources.in.count:",
            "many.toml:7:14: sinks.out.batch_size: must be at least 1",
            "2 errors found",
        ],
    );
}

#[test]
fn a_file_that_does_not_exist() {
    let dir = Scratch::new("missing");
    let out = run(&dir.0, &["validate", "nope.toml"], 30);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nope.toml: cannot read the file: No such file or directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_broker_fails_the_run_naming_it() {
    let dir = Scratch::new("unreachable");
    let file = dir.write(
        "unreachable.toml",
        &format!(
            "[sources.in]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nstream = \"s\"\ngroup = \"g\"\nconnect_timeout = \"2s\"\n\n{SINK}"
        ),
    );
    let out = run(&dir.0, &["run", "--progress", "off", file.to_str().unwrap()], 60);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("redis://127.0.0.1:1"), "{err}");
    assert!(err.contains("FAILED"), "{err}");
}

#[test]
fn valid_files_are_summarised() {
    let dir = Scratch::new("valid");
    let file = dir.write("fine.toml", &format!("{SOURCE}\n[[steps]]\nfilter = '.a'\n\n{SINK}"));
    let out = run(&dir.0, &["validate", file.to_str().unwrap()], 30);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("fine.toml: ok — pipeline `fine`: 1 source(s), 1 step(s), 1 sink(s), 0 test(s)"),
        "{}",
        stdout(&out)
    );
}
