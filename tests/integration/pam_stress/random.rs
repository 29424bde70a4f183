//! The random stress test.

use super::*;

#[derive(Default)]
pub struct Stats {
    pub runs: usize,
    pub retries: BTreeMap<&'static str, usize>,
    pub ops: BTreeMap<(Op, Ret), usize>,
    pub decisions: BTreeMap<String, usize>,
    pub bad_args: usize,
    pub info_kinds: BTreeMap<&'static str, usize>,
    pub busy: Duration,
    pub slowest: Duration,
}

#[test]
pub fn pam_stress_random_pamtester_runs() {
    let _lock = PamLock::acquire();
    let n = env_usize("KW_PAM_STRESS_N", 2000);
    let seed = seed();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = env_usize("KW_PAM_STRESS_THREADS", cpus.clamp(2, 4)).max(1);
    let only = std::env::var("KW_PAM_STRESS_ONLY")
        .ok()
        .map(|v| v.trim().parse::<usize>().expect("KW_PAM_STRESS_ONLY"));
    eprintln!(
        "pam_stress: seed {seed:#x} (replay: KW_PAM_STRESS_SEED={seed:#x}), \
         {n} invocations, {threads} threads"
    );
    let world = World::new("pamstress");
    let budget = args_budget(&world.module);
    let indices: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..n).collect(),
    };

    let next = AtomicUsize::new(0);
    let stats = Mutex::new(Stats::default());
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (world, next, stats, failures, indices) =
                (&world, &next, &stats, &failures, &indices);
            s.spawn(move || {
                let w = Worker::new(world, k);
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = indices.get(j) else { break };
                    let case = gen_case(world, seed, i, budget);
                    let run = run_case(world, &w, &case, None, TIMEOUT);
                    let verdict = judge(world, &w.svc, &case, &run, false);
                    let mut st = lock(stats);
                    st.runs += 1;
                    for why in &run.retries {
                        *st.retries.entry(why).or_default() += 1;
                    }
                    st.busy += run.elapsed;
                    st.slowest = st.slowest.max(run.elapsed);
                    *st.info_kinds.entry(case.info_kind).or_default() += 1;
                    if ArgsModel::of(&case.pieces).bad.is_some() {
                        st.bad_args += 1;
                    }
                    match verdict {
                        Ok(v) => {
                            for (op, ret) in v.ops {
                                *st.ops.entry((op, ret)).or_default() += 1;
                            }
                            for d in v.decisions {
                                *st.decisions.entry(d).or_default() += 1;
                            }
                        }
                        Err(why) => {
                            drop(st);
                            let report = format!(
                                "{why}\n{}\n  exit: {:?} after {:?}\n  stderr: {}\n  replay: \
                                 KW_PAM_STRESS_SEED={seed:#x} KW_PAM_STRESS_ONLY={i} \
                                 cargo test --test integration pam_stress_random -- --nocapture",
                                describe(world, &case),
                                run.status,
                                run.elapsed,
                                excerpt(&run.stderr, 3000),
                            );
                            lock(failures).push((i, report));
                        }
                    }
                }
            });
        }
    });
    let wall = started.elapsed();
    let st = stats.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(i, _)| *i);

    let mut table = String::new();
    let _ = writeln!(
        table,
        "pam_stress: {} invocations in {:.1} s wall ({} threads; pamtester {:.1} ms mean, {:.0} ms slowest), \
         {} with bad arguments, {} libpam_wrapper retries, {} failed",
        st.runs,
        wall.as_secs_f64(),
        threads,
        st.busy.as_secs_f64() * 1000.0 / st.runs.max(1) as f64,
        st.slowest.as_secs_f64() * 1000.0,
        st.bad_args,
        st.retries.values().sum::<usize>(),
        failures.len()
    );
    for op in Op::ALL {
        let row: Vec<String> = st
            .ops
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|((_, r), c)| format!("{} {c}", r.name()))
            .collect();
        let _ = writeln!(table, "  {:<13} {}", op.word(), row.join(", "));
    }
    if !st.retries.is_empty() {
        let r: Vec<String> = st
            .retries
            .iter()
            .map(|(k, v)| format!("{k:?} {v}"))
            .collect();
        let _ = writeln!(table, "  retried: {}", r.join(", "));
    }
    let d: Vec<String> = st
        .decisions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(table, "  records: {}", d.join(", "));
    let k: Vec<String> = st
        .info_kinds
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(table, "  SSH_AUTH_INFO_0 kinds: {}", k.join(", "));
    eprint!("{table}");

    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(8).map(|(_, r)| r.as_str()).collect();
        panic!(
            "{} of {} pamtester runs went wrong (seed {seed:#x}); the first {}:\n\n{}",
            failures.len(),
            st.runs,
            shown.len(),
            shown.join("\n\n")
        );
    }
    if only.is_none() {
        assert_eq!(st.runs, n);
        // The mix covered what it is meant to cover.
        for op in Op::ALL {
            assert!(
                st.ops.keys().any(|(o, _)| *o == op) || n < 200,
                "{} never ran",
                op.word()
            );
        }
    }
}
