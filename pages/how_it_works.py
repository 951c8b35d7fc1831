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
if snap is None:
    st.info("Start a run on the 2-D playground or the images page to see its numbers here.")
else:
    c1, c2, c3 = st.columns(3)
    c1.metric("step", f"{snap.step:,}")
    c2.metric("held-out ELBO", f"{snap.meta.get('val_elbo', float('nan')):.3f}")
    c3.metric("held-out log p(x)", f"{snap.meta.get('val_loglik', float('nan')):.3f}")
    gap = snap.meta.get("val_loglik", float("nan")) - snap.meta.get("val_elbo", float("nan"))
    st.markdown(f"The gap log p(x) − ELBO, the KL from q to the true posterior, is **{gap:.4f}** nats per point "
                "now; it shrinks as q learns.")
