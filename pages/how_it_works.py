"""How it works: the method in five steps, tied to the numbers of the current run."""

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

job = ui.current_job("toy") or ui.current_job("images")
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
