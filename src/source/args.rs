//! ComfyUI's command line as discovery reads it (a container's `Path` + `Args`, a process's
//! argv): the flags that move its folders or its port. Both argparse spellings count
//! (`--flag VALUE` and `--flag=VALUE`); `--extra-model-paths-config` takes one or more paths
//! and may repeat (`nargs='+'`, `action='append'` in ComfyUI's `comfy/cli_args.py`).

/// ComfyUI's default port (`--port`).
pub const DEFAULT_PORT: u16 = 8188;

/// The flags of one ComfyUI command line that discovery uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComfyArgs {
    /// `main.py` as written (relative to the working directory, or absolute).
    pub main: Option<String>,
    pub base_directory: Option<String>,
    pub port: Option<u16>,
    pub extra_model_paths: Vec<String>,
}

impl ComfyArgs {
    pub fn parse(args: &[String]) -> ComfyArgs {
        let mut out = ComfyArgs {
            main: args.iter().find(|a| a.ends_with("main.py")).cloned(),
            ..ComfyArgs::default()
        };
        let mut i = 0;
        while i < args.len() {
            let (flag, inline) = match args[i].split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (args[i].as_str(), None),
            };
            let inline_value = inline.is_some();
            let mut values: Vec<String> = inline.into_iter().collect();
            let many = flag == "--extra-model-paths-config";
            if !inline_value {
                // The words up to the next flag (one for a single-valued flag).
                while let Some(next) = args.get(i + 1 + values.len()) {
                    if next.starts_with("--") || (!many && !values.is_empty()) {
                        break;
                    }
                    values.push(next.clone());
                }
            }
            match flag {
                "--base-directory" => out.base_directory = values.first().cloned(),
                "--port" => out.port = values.first().and_then(|p| p.parse().ok()),
                _ if many => out.extra_model_paths.extend(values.iter().cloned()),
                _ => {}
            }
            i += 1 + if inline_value { 0 } else { values.len() };
        }
        out
    }

    /// The port ComfyUI listens on (inside its container, or on the host).
    pub fn listen_port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ComfyArgs {
        ComfyArgs::parse(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn reads_both_spellings_and_repeated_multi_value_configs() {
        let a = parse(
            "python main.py --listen --base-directory /basedir --port 8190 --extra-model-paths-config a.yaml /b.yaml --cpu --extra-model-paths-config=c.yaml",
        );
        assert_eq!(a.main.as_deref(), Some("main.py"));
        assert_eq!(a.base_directory.as_deref(), Some("/basedir"));
        assert_eq!(a.port, Some(8190));
        assert_eq!(a.extra_model_paths, ["a.yaml", "/b.yaml", "c.yaml"]);
        let b = parse("python /app/main.py --base-directory=/b --port=x");
        assert_eq!(b.base_directory.as_deref(), Some("/b"));
        assert_eq!((b.port, b.listen_port()), (None, DEFAULT_PORT));
        assert_eq!(
            parse("python main.py"),
            ComfyArgs {
                main: Some("main.py".into()),
                ..ComfyArgs::default()
            }
        );
    }
}
