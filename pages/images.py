"""Images: cluster MNIST, digits or Fashion-MNIST with a mixture of flows on PCA features."""

import streamlit as st

import ui
from vmonf import data
from vmonf.studio import figures
from vmonf.studio.worker import JobSpec

PAGE = "images"
IMAGE_STARTS = {"Gaussian mixture": "gmm", "k-means": "kmeans"}  # the start radio: label -> init method
SOURCES = {
    "MNIST: 5,000 real digits (built in)": ("mnist", {"source": "embedded"}),
    "MNIST: all 70,000 digits": ("mnist", {"source": "full"}),
    "scikit-learn digits (8×8)": ("digits", {}),
    "Fashion-MNIST": ("fashion-mnist", {}),
}
DOWNLOADABLE = {"MNIST: all 70,000 digits": data.MNIST, "Fashion-MNIST": data.FASHION_MNIST}


def available(choice: str) -> bool:
    """Whether the IDX files are already on this machine (for the download-on-request sets)."""
    source = DOWNLOADABLE.get(choice)
    if source is None:
        return True
    try:
        data.load_idx_dataset(source, split="test")
        return True
    except ValueError:
        return False


def download_ui(choice: str) -> None:
    source = DOWNLOADABLE[choice]
    st.warning(f"{choice} is not on this machine yet. It is downloaded once (about 11–30 MB), checked against its "
               f"published checksum, and cached in {data.default_cache_dir() / source.name}.",
               icon=":material/download:")
    if st.button("Download now", key="img_download", type="primary"):
        bar = st.progress(0.0, text="downloading…")

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / total, 1.0) if total else 0.0, text=f"downloading… {done / 1e6:.1f} MB")

        try:
            data.load_idx_dataset(source, download=True, progress=progress)
        except ValueError as exc:
            st.error(f"The download failed: {exc}", icon=":material/error:")
        else:
            st.rerun()


def settings_ui() -> tuple[str, JobSpec]:
    sb = st.sidebar
    sb.header("Data")
    choice = sb.selectbox("data set", list(SOURCES), key="img_source",
                          help="Handwritten digits (or clothes) to cluster without their labels.")
    name, image_params = SOURCES[choice]
    subset = sb.radio("classes", ["0–4 (the paper's digits)", "all 10"], key="img_classes", horizontal=True,
                      help="The paper clustered the digits 0–4 with K=5, with MAF flows on the pixels; here the "
                           "flows see PCA features of the images, so the numbers are not the paper's.")
    classes = [0, 1, 2, 3, 4] if subset.startswith("0") else None
    pca = sb.slider("PCA dimensions", 4, 40, 16, key="img_pca",
                    help="Images are compressed to this many whitened PCA features; flows on raw pixels collapse. "
                         "Unsupervised, 16 clustered best; with labels, 32 did better (MNIST, 10 labels per class: "
                         "accuracy 0.907 against 0.875 with consistency; docs/RESULTS.md).")
    sb.header("Model")
    k = sb.slider("components K", 2, 20, 5 if classes else 10, key=f"img_k_{subset}",
                  help="How many flows (clusters). The number of classes is a good start.")
    flow = sb.radio("flow type", ["realnvp", "maf"], key="img_flow", horizontal=True,
                    help="RealNVP coupling layers, or MAF (MADE) blocks as in the paper's MNIST run.")
    # Small flows by default: on MNIST 0-4 (16 PCA dims), depth 2 / width 32 reached accuracy 0.745 where
    # depth 4 / width 64 overfitted (held-out log-likelihood -16 -> -68 in 3,000 steps) and stayed at 0.68.
    depth = sb.slider("flow depth", 1, 8, 2, key="img_depth", help="Blocks per component flow.")
    hidden = sb.select_slider("hidden width", [16, 32, 64, 128, 200], 32, key="img_hidden",
                              help="Neurons per layer inside each flow (the paper used 200 for MAF). "
                                   "Bigger flows overfit a few thousand images.")
    sb.header("Training")
    lr = sb.select_slider("learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], 1e-3, key="img_lr",
                          format_func=lambda v: f"{v:g}", help="Adam step size. Too high and training diverges.")
    labels = sb.slider("labelled images per class", 0, 50, 0, key="img_labels",
                       help="Semi-supervised: reveal this many labels per class (0 = unsupervised).")
    steps = sb.slider("stop after (steps)", 0, 10_000, 1500, 250, key="img_steps",
                      help="Training pauses here; Resume goes on. Held-out likelihood peaks after ~1,000 steps "
                           "and then the flows overfit. 0 = train until you press Stop.")
    seed = sb.number_input("seed", 0, 10_000, 0, key="img_seed", help="Seeds the data split, the model and batches.")
    consistency = sb.select_slider(
        "consistency weight", [0.0, 1.0, 2.0, 5.0, 10.0], 0.0, key="img_consistency",
        format_func=lambda v: "off" if v == 0 else f"{v:g}",
        help="Beyond the paper: penalise the model for changing its mind about an image when it is shifted by "
             "up to 2 pixels or rotated by up to 12°. On MNIST-5k it lifted accuracy above a Gaussian mixture "
             "(docs/BEYOND.md has the figures). Training takes longer.")
    start = sb.radio(
        "start", list(IMAGE_STARTS), key="img_init", horizontal=True, disabled=labels > 0,
        help="Where the components begin: the clusters of a full-covariance Gaussian mixture, or of k-means. "
             "On MNIST 0–4 the Gaussian-mixture start clustered better; on the 8×8 digits k-means did "
             "(docs/RESULTS.md, \"Images\"). With labels, the labelled images set the start.")
    init = "auto" if labels > 0 else IMAGE_STARTS[start]  # auto with labels: spread them over a k-NN graph
    train = {"lr": lr, "batch_size": 256, "seed": int(seed), "init": init, "consistency": consistency}
    spec = JobSpec(dataset=name, image_params=image_params, classes=classes, pca=pca, n_components=k,
                   model={"depth": depth, "hidden": hidden, "flow": flow}, labelled_per_class=labels,
                   data_seed=int(seed), train=train,
                   grid=0, max_steps=steps)
    return choice, spec


def render(job, snap) -> None:
    ui.status_line(job, snap)
    if snap is None:
        return
    m = snap.meta
    c1, c2, c3 = st.columns(3)
    c1.metric("accuracy (best matching)", f"{m.get('accuracy', float('nan')):.3f}",
              help="Share of images whose component matches their true class, after matching components to classes.")
    c2.metric("NMI", f"{m.get('nmi', float('nan')):.3f}", help="Normalised mutual information with the labels (0–1).")
    c3.metric("ARI", f"{m.get('ari', float('nan')):.3f}",
              help="Adjusted Rand index with the labels (0 = chance, 1 = perfect).")
    left, right = st.columns(2)
    with left:
        ui.live_figure(figures.image_grid_figure(snap), key="img_grid")
    with right:
        ui.live_figure(figures.contingency_figure(snap), key="img_table")
    ui.live_figure(figures.curves_spec(snap), key="img_curves")


st.title("Images")
st.caption("Each row of samples is one component. A good clustering has one digit per component.")
choice, spec = settings_ui()
if not available(choice):
    download_ui(choice)
    st.stop()
job = ui.controls(PAGE, spec)
if job is None:
    st.info("Press **Start**. The first frame takes a few seconds: the images are loaded and compressed with PCA, "
            "and a Gaussian mixture (or k-means) picks a starting point.", icon=":material/arrow_back:")
else:
    ui.live_panel(PAGE, render, every=0.5)
    if job.checkpoint:
        st.download_button("Download the trained model (.pt)", job.checkpoint, file_name="vmonf-images.pt",
                           key="img_download_model")
