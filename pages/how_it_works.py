"""How it works: the method in five steps, tied to the numbers of the current run."""

import math

import streamlit as st

import ui

st.title("How it works")
st.markdown("A **variational mixture of normalizing flows** (Pires & Figueiredo, ESANN 2020) clusters data whose "
            "clusters are not Gaussian blobs. Each cluster gets its own flow, and a small network learns which "
            "cluster each point belongs to.")
st.subheader("1. A mixture model")
st.latex(r"p(x) = \sum_{k=1}^{K} \pi_k \, p(x \mid c = k)")
st.subheader("2. Each component is a normalizing flow")
st.markdown("An invertible map $f_k$ sends data to a standard Gaussian; the change-of-variables formula gives "
            "the exact density.")
st.latex(r"\log p(x \mid k) = \log \mathcal{N}\big(f_k(x); 0, I\big)"
         r" + \log \left|\det \frac{\partial f_k}{\partial x}\right|")
st.subheader("3. Affine coupling layers (RealNVP)")
st.markdown("Half of the coordinates pass through and decide how the other half is scaled and shifted, so the "
            "Jacobian is triangular and its determinant is a product of the scales.")
st.latex(r"z_{1:d} = x_{1:d}, \quad z_{d+1:D} = x_{d+1:D} \odot e^{s(x_{1:d})} + t(x_{1:d}), \quad "
         r"\log|\det J| = \textstyle\sum_i s_i(x_{1:d})")
st.subheader("4. Variational inference")
st.markdown("A network $q(c \\mid x)$ guesses the cluster of each point. The evidence lower bound (ELBO) is below "
            "$\\log p(x)$, and the gap is the KL divergence from $q$ to the true posterior.")
st.latex(r"\log p(x) - \mathrm{ELBO}(x) = \mathrm{KL}\big(q(c \mid x) \,\|\, p(c \mid x)\big) \ge 0")
st.subheader("5. The VMoNF objective")
st.latex(r"\mathrm{ELBO}(x) = \sum_{k} q(k \mid x)\big[\log p(x \mid k) + \log \pi_k - \log q(k \mid x)\big]")
st.markdown("The sum over $k$ is exact. Flows, $\\pi$ and $q$ are trained together with Adam.")

def pinned_point(job) -> None:
    """The playground's pinned probe point, its own numbers inside the formulas of steps 1, 4 and 5."""
    pin = st.session_state.get("toy_pin")
    if job is None or not pin:
        st.caption("Pin a point on the playground's density chart (click it) to see its own numbers here.")
        return
    job.probe(pin["x"], pin["y"], wait=0.5)
    a = job.probe_result
    if not a or a["x"] != [pin["x"], pin["y"]]:
        st.caption("The pinned point's numbers arrive once the run has a model (after its start is chosen).")
        return
    x, y = a["x"]
    st.markdown(f"At the point you pinned, x = ({x:.3f}, {y:.3f}), step **{a['step']:,}**:")
    terms = " + ".join(rf"e^{{{lj:.2f}}}" for lj in a["log_joint"])
    st.latex(rf"\log p(x) = \log \sum_k \pi_k\, p(x \mid k) = \log\big({terms}\big) = {a['log_p']:.3f}")
    parts = " + ".join(rf"{q:.2f}\,[{lj:.2f} - ({math.log(q) if q > 0 else 0:.2f})]"
                       for q, lj in zip(a["q"], a["log_joint"], strict=True) if q > 1e-6)
    st.latex(rf"\mathrm{{ELBO}}(x) = \sum_k q(k \mid x)\big[\log \pi_k + \log p(x \mid k) - \log q(k \mid x)\big]"
             rf" = {parts} = {a['elbo']:.3f}")
    st.latex(rf"\log p(x) - \mathrm{{ELBO}}(x) = {a['gap']:.4f} = \mathrm{{KL}}\big(q(c\mid x)\,\|\,p(c\mid x)\big)")
    st.caption("q(k|x): " + ", ".join(f"{q:.3f}" for q in a["q"]) + " · p(k|x): "
               + ", ".join(f"{p:.3f}" for p in a["p"]))


job = ui.current_job("toy") or ui.current_job("images")
st.subheader("At one point")
pinned_point(ui.current_job("toy"))
snap = job.latest() if job else None
st.subheader("In your current run")
if snap is None or "val_expected_loglik" not in snap.meta:
    st.info("Start a run on the 2-D playground or the images page to see its numbers here.")
    st.stop()
m = snap.meta
ell, elp, ent, elbo, logp = (m["val_expected_loglik"], m["val_expected_logprior"], m["val_entropy"], m["val_elbo"],
                             m["val_loglik"])
st.markdown(f"At step **{snap.step:,}**, averaged over the held-out points (nats per point):")
st.latex(rf"""\underbrace{{{elbo:.3f}}}_{{\mathrm{{ELBO}}}}
 = \underbrace{{{ell:.3f}}}_{{\mathbb{{E}}_q[\log p(x\mid c)]}}
 + \underbrace{{({elp:.3f})}}_{{\mathbb{{E}}_q[\log \pi_c]}} + \underbrace{{{ent:.3f}}}_{{\mathrm{{H}}[q(c\mid x)]}}""")
st.latex(rf"\log p(x) - \mathrm{{ELBO}} = {logp:.3f} - ({elbo:.3f}) = {logp - elbo:.4f}"
         r" = \mathrm{KL}\big(q(c\mid x)\,\|\,p(c\mid x)\big)")
steps, gap = snap.get("hist_step"), snap.get("hist_val_loglik") - snap.get("hist_elbo")
st.caption("The gap during training: it shrinks as q(c|x) learns the true posterior p(c|x).")
st.line_chart({"step": steps, "log p(x) − ELBO": gap}, x="step", y="log p(x) − ELBO", height=220)
