"""Few-step distillation of a pair's base model: DMD (as in DMD2, its GAN term optional) and DP-DMD (seed 004).

`distill.distill(cfg)` is what `diversity-cli distill` runs; `objective.Distiller` holds the three networks and
computes the losses; `losses` has them as plain functions; `generator` runs the student's few-step sampler and
the teacher's deterministic ODE; `predict` calls a diffusers network at per-sample timesteps; `discriminator` is
the GAN term's head on the fake score and `real_scenes` its real images; `state` keeps the run directory
(checkpoints, log, resume and overwrite rules).
"""
