"""Every AnnData key that sc_print reads or writes, in one place.

Writers (``sp.pp``/``sp.tl``) and readers (``sp.pl``/``sp.get``) import these helpers, so the two
cannot drift apart (the squidpy ``Key`` / scanpy ``_keys`` pattern).
"""

from __future__ import annotations

PREFIX = "scprint"


class Key:
    """Namespace of AnnData slot names used by sc_print."""

    class var:
        """Keys in ``.var``."""

        gene_id = f"{PREFIX}_gene_id"  #: vocabulary Ensembl id of each gene (``""`` when unmapped)
        in_vocab = f"{PREFIX}_in_vocab"  #: bool, gene maps onto the model vocabulary
        vocab_index = f"{PREFIX}_vocab_index"  #: int, row in the model vocabulary (-1 when unmapped)
        is_tf = f"{PREFIX}_is_tf"  #: bool, gene is a transcription factor

        @staticmethod
        def hub_score(network_key: str, score: str) -> str:
            """Column holding a hub ``score`` of the network stored under ``network_key``."""
            return f"{network_key}_{score}"

    class obs:
        """Keys in ``.obs``."""

        depth = f"{PREFIX}_depth"  #: total raw counts over the mapped genes

        @staticmethod
        def pred(label: str, key_added: str = PREFIX) -> str:
            """Predicted label (readable name) column."""
            return f"{key_added}_pred_{label}"

        @staticmethod
        def pred_id(label: str, key_added: str = PREFIX) -> str:
            """Predicted label (ontology id) column."""
            return f"{key_added}_pred_{label}_id"

        @staticmethod
        def conf(label: str, key_added: str = PREFIX) -> str:
            """Confidence of the predicted label."""
            return f"{key_added}_conf_{label}"

    class obsm:
        """Keys in ``.obsm``."""

        @staticmethod
        def emb(key_added: str = PREFIX, label: str | None = None) -> str:
            """Cell embedding (default token mix), or the embedding of one label token."""
            return f"X_{key_added}" if label is None else f"X_{key_added}_{label}"

        @staticmethod
        def proba(label: str, key_added: str = PREFIX) -> str:
            """Full class probabilities for one label."""
            return f"{key_added}_proba_{label}"

    class layers:
        """Keys in ``.layers``."""

        denoised = f"{PREFIX}_denoised"

    class varp:
        """Keys in ``.varp``."""

        @staticmethod
        def grn(key_added: str = f"{PREFIX}_grn", group: str | None = None) -> str:
            """Gene network for all cells (``group=None``) or one group."""
            return key_added if group is None else f"{key_added}_{group}"

    class varm:
        """Keys in ``.varm``."""

        hubs = f"{PREFIX}_hubs"
        gene_emb = f"{PREFIX}_gene_emb"

    class uns:
        """Keys in ``.uns``."""

        prepare = f"{PREFIX}_prepare"
        embed = f"{PREFIX}_embed"
        denoise = f"{PREFIX}_denoise"
        grn = f"{PREFIX}_grn"  # default; the grn record lives at .uns[key_added]
        heads = f"{PREFIX}_heads"

        @staticmethod
        def hubs(network_key: str) -> str:
            """Tidy hub table of one network."""
            return f"{network_key}_hubs"
