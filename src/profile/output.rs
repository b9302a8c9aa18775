//! The Firefox Profiler and flame-graph outputs of a [`Profile`].

use super::{Profile, ProfileError, SampleKind};
use fxprof_processed_profile as fxprof;

impl Profile {
    /// Writes the Firefox Profiler's processed format (open it at
    /// profiler.firefox.com): one process with one thread, a sample per recorded
    /// sample at its time, wasm frames in the category "Wasm" and the synthetic frames
    /// (`[host]`, `[transition]`, ...) in "Host" or "Other".
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> Result<(), ProfileError> {
        let interval = u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX);
        let mut p = fxprof::Profile::new(
            "framewalk",
            std::time::SystemTime::now().into(),
            fxprof::SamplingInterval::from_nanos(interval.max(1)),
        );
        let start = fxprof::Timestamp::from_nanos_since_reference(0);
        let process = p.add_process("framewalk", std::process::id(), start);
        let thread = p.add_thread(process, std::process::id(), start, true);
        p.set_thread_name(thread, "wasm");
        let wasm = p.add_category("Wasm", fxprof::CategoryColor::Blue);
        let host = p.add_category("Host", fxprof::CategoryColor::Yellow);
        let other = fxprof::CategoryHandle::OTHER;
        let labels: Vec<fxprof::StringHandle> = self
            .frames
            .iter()
            .map(|f| p.intern_string(&f.name))
            .collect();
        for s in &self.samples {
            let frames: Vec<fxprof::FrameInfo> = s
                .stack
                .iter()
                .map(|&i| {
                    let f = &self.frames[i];
                    let category = if f.func_index.is_some() {
                        wasm
                    } else if f.name == SampleKind::Host.leaf_label().unwrap_or_default() {
                        host
                    } else {
                        other
                    };
                    fxprof::FrameInfo {
                        frame: fxprof::Frame::Label(labels[i]),
                        category_pair: category.into(),
                        flags: fxprof::FrameFlags::empty(),
                    }
                })
                .collect();
            let time = u64::try_from(s.time.as_nanos()).unwrap_or(u64::MAX);
            p.add_sample(
                thread,
                fxprof::Timestamp::from_nanos_since_reference(time),
                frames.into_iter(),
                fxprof::CpuDelta::from_nanos(interval),
                1,
            );
        }
        serde_json::to_writer(&mut *out, &p).map_err(std::io::Error::from)?;
        Ok(())
    }

    /// Writes a flame graph of the folded stacks as SVG (inferno's).
    pub fn write_svg(&self, out: &mut dyn std::io::Write) -> Result<(), ProfileError> {
        let lines: Vec<String> = self
            .folded()
            .into_iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect();
        let mut options = inferno::flamegraph::Options::default();
        options.title = "framewalk: wasm stacks".to_string();
        options.count_name = "samples".to_string();
        if lines.is_empty() {
            // inferno refuses an empty input; an empty profile is still a valid picture.
            writeln!(
                out,
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" y="25">no samples</text></svg>"#
            )?;
            return Ok(());
        }
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
            .map_err(|e| ProfileError::FlameGraph(e.to_string()))
    }
}
