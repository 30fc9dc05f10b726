"""``python -m sc_print``: the ``sc-print`` command line; ``demo`` runs the main job on bundled data with the embedded model."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anndata import AnnData


def _slots(adata: AnnData) -> list[str]:
    """Every sc_print slot of ``adata``, one line each."""
    lines = []
    for attr in ("obs", "var"):
        frame = getattr(adata, attr)
        lines += [f".{attr}[{c!r}]" for c in frame.columns if c.startswith("scprint")]
    for attr in ("obsm", "varm", "layers", "varp", "uns"):
        mapping = getattr(adata, attr)
        lines += [f".{attr}[{k!r}]" for k in mapping.keys() if k.startswith(("scprint", "X_scprint"))]
    return lines


def _symbols(ids: list[str]) -> list[str]:
    """Gene symbols of Ensembl ids (the id itself when the gene table has no symbol)."""
    from sc_print.data import load_gene_table

    table = load_gene_table()["symbol"]
    return [str(table.get(g, "")) or g for g in ids]


def demo(*, n_genes: int = 400, out: str | None = None, overwrite: bool = False) -> AnnData:
    """Prepare → embed → grn per cell line → hubs on the bundled example with the default model.

    ``out`` must not exist unless ``overwrite=True`` (checked before anything runs).
    """
    import sc_print as sp
    from sc_print._io import atomic_target, check_free

    if out:
        check_free([out], overwrite=overwrite)
    t0 = time.perf_counter()
    adata = sp.datasets.example()
    print(
        f"data: {adata.n_obs} cells x {adata.n_vars} genes (bundled CellBench Drop-seq example, raw counts, "
        f"cell lines {', '.join(adata.obs['cell_line'].cat.categories)})"
    )
    sp.pp.prepare(adata)
    uns = adata.uns["scprint_prepare"]
    print(f"prepare: {uns['n_mapped']} genes in the model vocabulary ({uns['fraction_mapped']:.0%} of the columns)")
    sp.tl.embed(adata)
    for label in adata.uns["scprint_embed"]["labels"]:
        counts = adata.obs[f"scprint_pred_{label}"].value_counts()
        top = ", ".join(f"{name} ({n})" for name, n in counts.head(3).items() if n)
        info = adata.uns["scprint_embed"]["abstention"][label]
        conf = adata.obs[f"scprint_conf_{label}"]
        print(
            f"embed: .obsm['X_scprint'] {adata.obsm['X_scprint'].shape}; predicted {label}: {top}; "
            f"unknown {info['n_unknown']}/{adata.n_obs} (confidence < {info['min_confidence']:.2f}: "
            f"{info['n_low_confidence']}, unlike the calibration cells: {info['n_novel']}); "
            f"median confidence {conf.median():.2f}"
            + (
                f"; held-out accuracy at these confidences {info['expected_accuracy']:.2f}"
                if info.get("expected_accuracy") is not None
                else ""
            )
        )
    sp.tl.grn(adata, groupby="cell_line", genes="hvg", n_genes=n_genes)
    sp.tl.hubs(adata, key="scprint_grn")
    for group, key in adata.uns["scprint_grn"]["varp_keys"].items():
        hubs = sp.get.hubs(adata, key=key)
        top = hubs[hubs["score"] == "degree"].nlargest(5, "value")["gene"].astype(str).tolist()
        print(f"grn {group}: {adata.varp[key].nnz} edges over {n_genes} genes; top hubs: {', '.join(_symbols(top))}")
    print("wrote:")
    for line in _slots(adata):
        print("  " + line)
    if out:
        with atomic_target(out) as tmp:
            adata.write_h5ad(tmp)
        print(f"saved {out}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return adata
