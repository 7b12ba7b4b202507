//! `explain`'s text: one workload in full, or a namespace's inventory in a table.

use std::fmt::Write as _;

use crate::reconcile::changed_text;

use super::{Explanation, FROM_TEMPLATE, Inventory, State};

/// Writes `rows` as columns padded to their widest cell, each line after `indent`.
fn write_table<R: AsRef<[String]>>(s: &mut String, indent: &str, rows: &[R]) {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r.as_ref()[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(s, "{indent}{}", line.join("  ").trim_end());
    }
}

/// Renders the human table.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} {}/{}", e.kind, e.namespace, e.name);
    match &e.opt_in {
        Ok(keys) if keys.is_empty() => {
            let _ = writeln!(s, "Opt-in:        none");
        }
        Ok(keys) => {
            let _ = writeln!(s, "Opt-in:        {}", keys.join(", "));
        }
        Err(err) => {
            let _ = writeln!(s, "Opt-in:        INVALID: {err}");
        }
    }
    if !e.objects.is_empty() {
        let _ = writeln!(s, "Objects:");
        let mut table = vec![[
            "KIND".to_string(),
            "NAME".into(),
            "TRACKED".into(),
            "EXISTS".into(),
            "IGNORED".into(),
            "KEYS".into(),
            "REFERENCED BY".into(),
            "WHY".into(),
        ]];
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        for o in &e.objects {
            table.push([
                o.kind.to_string(),
                o.name.clone(),
                yn(o.tracked),
                yn(o.exists),
                yn(o.ignored),
                o.keys.clone(),
                if o.referenced_by.is_empty() {
                    "-".into()
                } else {
                    o.referenced_by.join("; ")
                },
                o.why.clone(),
            ]);
        }
        write_table(&mut s, "  ", &table);
    }
    let none = "-".to_string();
    let _ = writeln!(s, "Digest now:    {}", e.current.as_ref().unwrap_or(&none));
    let _ = writeln!(s, "Baseline:      {}", e.recorded.as_ref().unwrap_or(&none));
    if let Some(from) = &e.template_from {
        let _ = writeln!(s, "Template in:   {from} (spec.workloadRef)");
    }
    match &e.restart_at {
        Some(at) => {
            let at = if at.is_empty() { &none } else { at };
            let _ = writeln!(
                s,
                "Restarted at:  {at} (spec.restartAt: rolled by Argo Rollouts' restart)"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Pod template:  {}",
                e.pod_template.as_ref().unwrap_or(&none)
            );
        }
    }
    let _ = writeln!(
        s,
        "Last rollout:  {}",
        e.last_rollout.as_ref().unwrap_or(&none)
    );
    if let Some(window) = &e.restart_window {
        let _ = writeln!(s, "Restart window: {window}");
    }
    match &e.reloader_last_reloaded_from {
        Some(Ok(from)) => {
            let at = from.at.map(|t| format!(", at {t}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "Reloader:      last rolled it for {}{at} (its last-reloaded-from, {} format)",
                from.object(),
                from.format.as_str()
            );
        }
        Some(Err(why)) => {
            let _ = writeln!(
                s,
                "Reloader:      its last-reloaded-from cannot be read: {why}"
            );
        }
        None => {}
    }
    let _ = writeln!(s, "Status:        {}", e.status);
    if let Some(event) = &e.last_event {
        let _ = writeln!(s, "Last event:    {event}");
    }
    s
}

/// An opt-in annotation in a few characters: `auto`, `configmaps=a,b`, `reloader:auto`,
/// `reloader:configmap.reload=app`, `reloader:auto (pod template)`; `"true"` goes without saying.
pub(super) fn short_opt_in(entry: &str) -> String {
    let (entry, place) = match entry.strip_suffix(FROM_TEMPLATE) {
        Some(e) => (e, FROM_TEMPLATE),
        None => (entry, ""),
    };
    let Some((key, value)) = entry.split_once('=') else {
        return format!("{entry}{place}");
    };
    let key = match key.strip_prefix("kube-reloader.io/") {
        Some(name) => name.to_string(),
        None => match key.split_once("reloader.stakater.com/") {
            Some((prefix, name)) => format!("reloader:{prefix}{name}"),
            None => key.to_string(),
        },
    };
    if value == "true" {
        format!("{key}{place}")
    } else {
        format!("{key}={value}{place}")
    }
}

/// An inventory line's state: the label, and what it is about.
fn state_text(e: &Explanation) -> String {
    let about = changed_text(&e.changed);
    match (&e.state, &e.opt_in) {
        (State::Invalid, Err(why)) => format!("left alone: {why}"),
        (State::RolloutPending, _) => format!("rollout pending: {about} changed"),
        (State::Covered, _) => {
            format!("no rollout needed: {about} changed with the pod template")
        }
        (State::Held, _) => format!("holding: {about} deleted"),
        (State::Halted, _) => format!("held: the progressive rollout of {about} halted"),
        (State::Unknown, _) => e.status.clone(),
        (state, _) => state.label().to_string(),
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Renders the inventory as a table, one line per workload, and a footer saying what was left
/// out.
pub fn render_inventory(inv: &Inventory) -> String {
    let all = inv.namespace.is_none();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["WORKLOAD", "OPT-IN", "TRACKS", "STATE"];
    if all {
        header.insert(0, "NAMESPACE");
    }
    table.push(header.into_iter().map(String::from).collect());
    for e in &inv.workloads {
        let opt_in = match &e.opt_in {
            Ok(keys) => keys
                .iter()
                .map(|k| short_opt_in(k))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "invalid".into(),
        };
        let tracks: Vec<String> = e
            .objects
            .iter()
            .filter(|o| o.tracked)
            .map(|o| {
                let absent = if o.exists { "" } else { " (absent)" };
                format!("{}/{}{absent}", o.kind, o.name)
            })
            .collect();
        let mut row = vec![
            format!("{}/{}", e.kind.as_str().to_ascii_lowercase(), e.name),
            if opt_in.is_empty() {
                "-".into()
            } else {
                opt_in
            },
            if tracks.is_empty() {
                "-".into()
            } else {
                tracks.join(", ")
            },
            state_text(e),
        ];
        if all {
            row.insert(0, e.namespace.clone());
        }
        table.push(row);
    }
    let mut s = String::new();
    if !inv.workloads.is_empty() {
        write_table(&mut s, "", &table);
    }
    let scope = match &inv.namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".into(),
    };
    let _ = writeln!(
        s,
        "{} opted in, {} not opted in (not listed) {scope}.",
        plural(inv.workloads.len(), "workload"),
        inv.not_opted_in
    );
    if inv.unwatched > 0 {
        let _ = writeln!(
            s,
            "{} opted in, but in namespaces kube-reloader does not watch (--namespace, --ignore-namespace, --namespace-selector): not listed.",
            plural(inv.unwatched, "more workload")
        );
    }
    if !inv.not_served.is_empty() {
        let _ = writeln!(
            s,
            "Not served by this API server, skipped: {}.",
            inv.not_served.join(", ")
        );
    }
    s
}
