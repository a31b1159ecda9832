"""MetaWorld MT10 (``env.type="pirl_metaworld"``), language-conditioned: the evaluation set every
MT10 success rate here is measured on (`evaluate`), the multi-task few-shot SFT builder (`sft`),
the instruction tokenizer it builds and the shipped checkpoint (``assets/mt10_sft``)."""
