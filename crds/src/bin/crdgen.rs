//! Writes the CRD YAML to `crds/` and the chart (run from anywhere in the workspace).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let yaml = iotsub_crds::crd_yaml();
    for file in [iotsub_crds::CRD_FILE, iotsub_crds::CHART_CRD_FILE] {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a directory"))?;
        std::fs::write(&path, &yaml)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
