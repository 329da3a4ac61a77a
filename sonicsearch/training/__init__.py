"""Training: supervised fine-tuning (finetune), self-supervised pretraining (pretrain), their
objectives (objectives), degraded views for them (views) and split evaluation (evaluate)."""
