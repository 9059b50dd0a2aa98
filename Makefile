# diversity-cli: install, lint, test, and the paper's tables.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test test-slow test-readme test-faults test-slurm lint format demo clean check-wheel

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml; pip takes them from this machine's disk.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'

# The suite but its slow tests (make test-slow) and the SLURM test (make test-slurm against a real cluster;
# `pytest -m slurm tests/test_slurm.py` runs it as local processes where there is none): ~9 minutes on 2 cores.
test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m "not slow and not slurm" $(PYTEST_ARGS)

# The tests of tens of seconds each (distill's resumed monitoring, sweeps and shards as local processes): ~2 minutes.
test-slow:
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -m slow $(PYTEST_ARGS)

# Every command of README's bash blocks on the toy pair, from an empty directory, and the files and columns README
# promises (tests/test_readme.py lists what it does not run: GPU pairs, reproduce-*, SLURM, long trainings).
test-readme:
	DIVERSITY_CLI_README=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests/test_readme.py -q $(PYTEST_ARGS)

# Fault injection (tests/test_faults.py; 390 s on a shared 2-core machine): kill -9 at random points of
# generate, distill and fid, then rerun: outputs byte-identical to an uninterrupted run; two generate on one out.
test-faults:
	DIVERSITY_CLI_FAULTS=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_faults.py $(PYTEST_ARGS)

# A one-node SLURM cluster on localhost (scripts/slurm_cluster.sh: Debian's slurm-wlm, slurmdbd + mariadb, munge;
# needs root), the toy Table 2 pipeline as 4 array shards through it (tests/test_slurm.py, one shard cancelled and
# rerun), then only the daemons the script started are stopped. DIVERSITY_CLI_REQUIRE_SLURM: no silent local fallback.
test-slurm:
	bash scripts/slurm_cluster.sh start
	status=0; SLURM_CONF=$${SLURM_CLUSTER_DIR:-/tmp/diversity-slurm}/slurm.conf DIVERSITY_CLI_REQUIRE_SLURM=1 \
	  HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m slurm tests/test_slurm.py $(PYTEST_ARGS) || status=$$?; \
	bash scripts/slurm_cluster.sh stop; exit $$status

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]): layers and no cycles.
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The wheel installed (not editable) in a fresh virtualenv runs the toy pipeline from an empty directory.
check-wheel:
	PYTHON=$(PYTHON) bash scripts/check_wheel.sh

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The main job on the built-in pair: base, distilled and hybrid at the paper's k=1, 8 samples of one open prompt
# (the same seeds), ending with their contact sheet, a row per method (reporting/contact_sheet.py, the sheet generate
# leaves, its rows in this order). overwrite=true: the images are made again, so the sheet shows the weights installed
# now (a run directory knows its images by their settings, not by the bytes of the weights). 35 s of CPU time on one
# thread (three processes: imports and loading dominate; 73 s wall on 2 cores shared with a training job).
# DEMO_BASE_STEPS: the hybrid's base runs the student's first step (999 -> 749) in that many steps of its own. On the
# toy one base step there hands over its x̂0 at t=999, pure noise on its schedule (the prompt's mean image), and the
# hybrid loses the base's layout and sometimes the shape; 5 steps keep the layout (background, position, count) on
# most seeds, while the student still redraws the shape or colour on many (README: the toy table). Other pairs, or
# empty: generate's default, one base step on the student's schedule, as the paper runs SDXL. The base runs at CFG 0
# there, generate's default (the paper's "low or zero guidance"); README's table has CFG 3 beside it.
DEMO_OUT ?= results/demo
DEMO_PAIR ?= toy
DEMO_PROMPT ?= a shape
DEMO_BASE_STEPS ?= $(if $(filter toy%,$(DEMO_PAIR)),5)
demo:
	for method in base distilled hybrid; do \
	  knobs=; [ $$method = hybrid ] && knobs="$(if $(DEMO_BASE_STEPS),base_steps=$(DEMO_BASE_STEPS))"; \
	  $(BIN)/diversity-cli generate model=$(DEMO_PAIR) method=$$method k=1 prompt="$(DEMO_PROMPT)" n=8 seed=0 \
	    $$knobs overwrite=true out=$(DEMO_OUT) || exit 1; \
	done
	$(BIN)/python -m diversity_cli.reporting.contact_sheet $(DEMO_OUT) $(DEMO_PAIR) "$(DEMO_PROMPT)" base distilled \
	  hybrid_k1$(if $(DEMO_BASE_STEPS),_bs$(DEMO_BASE_STEPS))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# ==================================================================================================================
# Reproducing the paper: one target per table and figure (README: "Reproducing the paper's tables").
# Each runs the whole pipeline (generate -> measure -> report) with the paper's settings on the paper's pairs
# (GPU nodes; weights in the Hugging Face cache). MODEL=toy, or the same target with -toy (reproduce-table3-toy),
# runs that pipeline on the toy pair with the toy metrics on a CPU; `make reproduce-toy` does every table and figure.
# Run directories: $(RESULTS)/<table>/ (each with report.html); tables, paper beside measured: $(RESULTS)/tables/.
# Every step resumes: rerunning a target only makes what is missing. `make -n <target>` prints the commands.
# ==================================================================================================================
CLI := $(BIN)/diversity-cli
MODEL ?= paper
DEVICE ?= auto
# LAUNCHER=slurm SHARDS=64: generate, fid and diversity run as SHARDS array tasks each (conf/hydra/launcher/slurm.yaml;
# slurm_cpu for a CPU cluster, submitit_local for local processes), wait, and merge exactly; ablate runs one job per
# point. README "Running on a cluster".
LAUNCHER ?= local
SHARDS ?= 1
SHARDED := $(if $(filter-out local,$(LAUNCHER)),launcher=$(LAUNCHER) shards=$(SHARDS),)
POINTS := $(if $(filter-out local,$(LAUNCHER)),launcher=$(LAUNCHER),)

ifeq ($(MODEL),toy)
RESULTS ?= results/toy
# Tables 2, 3, 4, E.1 and the figures run on PAIR; D.1 (other architectures) on D1_PAIRS: the toy has no other
# architecture, so its DMD and DP-DMD students stand there.
PAIR ?= toy
D1_PAIRS ?= toy toy_dpdmd
T1_PAIRS ?= toy
DIV_METRIC ?= toy_features
T3_PROMPTS ?= data/toy_prompts.txt
# The one prompt of D.1, E.1, Table 1 and Fig. 7 (the paper's "image of a car").
CAR ?= a shape
# Samples per prompt of Tables 3, D.1, E.1.
N ?= 32
# Tables 2/4: toy captions with one seed each, in the role of the COCO captions; the reference: toy scenes.
CAPTIONS ?= data/toy_captions.csv
LIMIT ?= 128
FID_REF ?= reference=toy toy.mode=dataset toy.count=1000
# replace_final as on the real pair: the student's first step, then the base with its own CFG (3, conf/model/toy.yaml)
# for 15 of its own DDIM steps from t=749 (60% of its 25; DDIM reaches 749 exactly with 15 or 30).
E1_FINAL ?= k=3 base_steps=15 base_guidance=3
N1 ?= 24
# train-lora steps of the toy adapters (its default is 300; fewer keep `make reproduce-toy` under 10 minutes)
LORA_STEPS ?= 150
X0_N ?= 4
N7 ?= 16
GUIDANCE_SWEEP ?= 0,1,2,3,5
BASE_STEPS_SWEEP ?= 1,2,5,10
else
RESULTS ?= results/paper
PAIR ?= sdxl_dmd2
D1_PAIRS ?= pixart_alpha_delta sd21_turbo
T1_PAIRS ?= sdxl_dmd2 sdxl_lcm sdxl_turbo sdxl_lightning
DIV_METRIC ?= dreamsim
T3_PROMPTS ?= data/table3_prompts.txt
CAR ?= image of a car
# D.1 and E.1: 100 samples of "image of a car" (paper); Table 3 does not state its n: the same.
N ?= 100
CAPTIONS ?= data/coco_30k.csv
# Tables 2/4: the first LIMIT captions (empty: all 30,000) against the COCO val2014 images in COCO_IMAGES.
LIMIT ?=
COCO_IMAGES ?=
FID_REF ?= reference=coco coco.images=$(if $(strip $(COCO_IMAGES)),$(strip $(COCO_IMAGES)),null)
# replace_final (not in the paper's code, which has no such method: our reading of its Table E.1): SDXL-DMD2's first
# step (t=999), then the base with its own CFG (8 under preset=paper) for 30 steps of its own scheduler (Euler under
# preset=paper) from t=759, the student's second level, to 0 (the paper's 6.61 s vs 9.22 s for 50 base steps
# suggests ~35).
E1_FINAL ?= k=3 base_steps=30 base_guidance=8
# Table 1: the adapters of data/table1_adapters.csv, weights under ADAPTERS/<name> (not shipped).
ADAPTERS ?= adapters/table1
N1 ?= 50
X0_N ?= 8
N7 ?= 32
GUIDANCE_SWEEP ?= 0,2,5,7.5
BASE_STEPS_SWEEP ?= 1,2,5,10
endif

TABLES := $(RESULTS)/tables
T1 := $(RESULTS)/table1
COCO := $(RESULTS)/coco
T3 := $(RESULTS)/table3
CARS := $(RESULTS)/car
FIGURES := $(RESULTS)/figures
GENERATE := $(CLI) generate device=$(DEVICE) $(SHARDED)
FID := $(CLI) fid $(SHARDED)
DIVERSITY := $(CLI) diversity $(SHARDED)
REPORT := $(CLI) report tables_dir=$(TABLES)
# Every file of each pair a target samples with, checked before its first image: each generate checks only what its
# method loads (a missing DMD2 student was told after hours of base images). `models <pair>` exits 1 on one missing.
PAIRS_CHECK = for pair in $(1); do $(CLI) models $$pair || exit 1; done
LIMIT_ARG := limit=$(if $(strip $(LIMIT)),$(strip $(LIMIT)),null)
# Tables 2/4 against COCO: every image the captions name checked in its folder before any generation (fid, which
# takes them all whatever LIMIT, would find one missing only after hours of it; a folder that merely exists passed),
# read as fid reads it: with FID_REF's other coco.* settings (coco.pattern=).
COCO_MISSING := error: COCO_IMAGES=/path/to/val2014 (a folder) is needed for the FID reference of Tables 2 and 4
COCO_SETTINGS = $(filter-out coco.images=%,$(filter coco.%,$(FID_REF)))
COCO_CHECK := $(if $(findstring reference=coco,$(FID_REF)),{ test -d "$(strip $(COCO_IMAGES))" || \
  { echo "$(COCO_MISSING)" >&2; exit 2; }; } && \
  $(BIN)/python scripts/check_coco.py "$(strip $(COCO_IMAGES))" "$(CAPTIONS)"$(if $(COCO_SETTINGS), $(COCO_SETTINGS)),:)

.PHONY: reproduce-table1 reproduce-table2 reproduce-table3 reproduce-table4 reproduce-tableD1 reproduce-tableE1 \
	reproduce-figures reproduce-all reproduce-toy

# Table 1: % change of CLIP score with an adapter trained on the base, applied to the base and to each student.
# One transfer-lora per pair over the whole adapter table (LAUNCHER/SHARDS: its (adapter, prompt) units as shards).
# Toy: a LoRA (red) and a slider (small -> large) trained here; the toy classifier counts the concept instead.
reproduce-table1:
	@$(call PAIRS_CHECK,$(if $(filter toy,$(MODEL)),$(PAIR),$(T1_PAIRS)))
ifeq ($(MODEL),toy)
	$(CLI) train-lora model=$(PAIR) concept=red steps=$(LORA_STEPS) out=$(T1)/adapters/red device=$(DEVICE)
	$(CLI) train-lora model=$(PAIR) mode=slider concept=large negative=small steps=$(LORA_STEPS) \
	  out=$(T1)/adapters/large device=$(DEVICE)
	$(CLI) transfer-lora model=$(PAIR) adapters=data/toy_table1_adapters.csv adapter_dir=$(T1)/adapters \
	  prompt="$(CAR)" n=$(N1) device=$(DEVICE) out=$(T1) $(SHARDED)
else
	for pair in $(T1_PAIRS); do \
	  $(CLI) transfer-lora model=$$pair adapters=data/table1_adapters.csv adapter_dir=$(ADAPTERS) n=$(N1) \
	    device=$(DEVICE) out=$(T1) $(SHARDED) || exit 1; \
	done
endif
	$(REPORT) out=$(T1) tables=[1]

# Table 2: FID / IS / CLIP / seconds of base, distilled and hybrid (k=1) on the captions, one seed each.
reproduce-table2:
	@$(call PAIRS_CHECK,$(PAIR))
	@$(COCO_CHECK)
	for method in base distilled hybrid; do \
	  $(GENERATE) model=$(PAIR) method=$$method k=1 n=1 prompts=$(CAPTIONS) $(LIMIT_ARG) out=$(COCO) || exit 1; \
	done
	$(FID) out=$(COCO) $(FID_REF) tags=[base,distilled,hybrid_k1] device=$(DEVICE)
	$(REPORT) out=$(COCO) tables=[2]

# Table 3: DreamSim diversity of N samples per prompt, base / distilled / hybrid (k=1).
reproduce-table3:
	@$(call PAIRS_CHECK,$(PAIR))
	for method in base distilled hybrid; do \
	  $(GENERATE) model=$(PAIR) method=$$method k=1 n=$(N) prompts=$(T3_PROMPTS) out=$(T3) || exit 1; \
	done
	$(DIVERSITY) out=$(T3) metric=$(DIV_METRIC) device=$(DEVICE)
	$(REPORT) out=$(T3) tables=[3]

# Table 4: hybrid vs. skipping the first timestep, on Table 2's captions (shares its run directory and hybrid).
reproduce-table4:
	@$(call PAIRS_CHECK,$(PAIR))
	@$(COCO_CHECK)
	for method in hybrid skip_first; do \
	  $(GENERATE) model=$(PAIR) method=$$method k=1 n=1 prompts=$(CAPTIONS) $(LIMIT_ARG) out=$(COCO) || exit 1; \
	done
	$(FID) out=$(COCO) $(FID_REF) tags=[hybrid_k1,skip_first] device=$(DEVICE)
	$(REPORT) out=$(COCO) tables=[4]

# Table D.1: diversity and seconds of base / distilled / hybrid on the other pairs, N samples of one prompt.
reproduce-tableD1:
	@$(call PAIRS_CHECK,$(D1_PAIRS))
	for pair in $(D1_PAIRS); do \
	  for method in base distilled hybrid; do \
	    $(GENERATE) model=$$pair method=$$method k=1 n=$(N) prompt="$(CAR)" out=$(CARS) || exit 1; \
	  done; \
	done
	$(DIVERSITY) out=$(CARS) metric=$(DIV_METRIC) device=$(DEVICE)
	$(REPORT) out=$(CARS) tables=[D1]

# Table E.1: the base at the first step (hybrid) vs. at the final steps (replace_final), N samples of one prompt.
reproduce-tableE1:
	@$(call PAIRS_CHECK,$(PAIR))
	for method in base distilled hybrid; do \
	  $(GENERATE) model=$(PAIR) method=$$method k=1 n=$(N) prompt="$(CAR)" out=$(CARS) || exit 1; \
	done
	$(GENERATE) model=$(PAIR) method=replace_final $(E1_FINAL) n=$(N) prompt="$(CAR)" out=$(CARS)
	$(DIVERSITY) out=$(CARS) metric=$(DIV_METRIC) device=$(DEVICE)
	$(REPORT) out=$(CARS) tables=[E1]

# Figure 5 (x̂0 commitment curve, Table 3's prompts) and Figure 7 (a: base guidance, b: k, c: the base's own steps).
reproduce-figures:
	@$(call PAIRS_CHECK,$(PAIR))
	mkdir -p $(FIGURES)
	grep -v '^#' $(T3_PROMPTS) | grep . > $(FIGURES)/prompts.txt
	$(CLI) x0viz model=$(PAIR) prompts=$(FIGURES)/prompts.txt n=$(X0_N) metric=$(DIV_METRIC) \
	  methods=[base,distilled,hybrid] device=$(DEVICE) out=$(FIGURES)/x0viz
	$(CLI) ablate $(POINTS) model=$(PAIR) base_guidance=$(GUIDANCE_SWEEP) prompt="$(CAR)" n=$(N7) metric=$(DIV_METRIC) \
	  device=$(DEVICE) out=$(FIGURES)/ablate
	$(CLI) ablate $(POINTS) model=$(PAIR) k=1..4 prompt="$(CAR)" n=$(N7) metric=$(DIV_METRIC) device=$(DEVICE) \
	  out=$(FIGURES)/ablate
	$(CLI) ablate $(POINTS) model=$(PAIR) base_steps=$(BASE_STEPS_SWEEP) prompt="$(CAR)" n=$(N7) metric=$(DIV_METRIC) \
	  device=$(DEVICE) out=$(FIGURES)/ablate
	$(REPORT) runs=[$(FIGURES)/x0viz,$(FIGURES)/ablate] tables=none

# Every table and figure, one after another (the targets share run directories: never in parallel).
reproduce-all:
	$(MAKE) -j1 reproduce-table1 reproduce-table2 reproduce-table3 reproduce-table4 reproduce-tableD1 \
	  reproduce-tableE1 reproduce-figures
	@echo "tables (paper beside measured): $(TABLES)/tables.md; HTML: $(RESULTS)/*/report.html"

# A line that calls $(MAKE) runs under make -n too: its timing would read as a finished run's, so it prints
# only when this is not a dry run (the first word of MAKEFLAGS holds the one-letter flags).
REAL_RUN = $(if $(findstring n,$(firstword -$(MAKEFLAGS))),:,echo)

# Everything on the toy pair on this CPU, timed per table (so the slow step is visible) and in all.
TOY_TARGETS := table1 table2 table3 table4 tableD1 tableE1 figures
reproduce-toy:
	@start=$$(date +%s); times=""; \
	for target in $(TOY_TARGETS); do \
	  began=$$(date +%s); \
	  $(MAKE) -j1 reproduce-$$target MODEL=toy || { $(REAL_RUN) "make reproduce-toy: $$target failed ($$times )"; exit 1; }; \
	  times="$$times $$target=$$(( $$(date +%s) - began ))s"; \
	  $(REAL_RUN) "make reproduce-toy: $$target took $$(( $$(date +%s) - began )) s"; \
	done; \
	echo "tables (paper beside measured): results/toy/tables/tables.md; HTML: results/toy/*/report.html"; \
	$(REAL_RUN) "make reproduce-toy: $$(( $$(date +%s) - start )) s wall time ($$times )"

reproduce-%-toy:
	$(MAKE) -j1 reproduce-$* MODEL=toy

# ==================================================================================================================
# The toy pair's weights, retrained from scratch into TOY_OUT (diversity_cli/toy/release.py: the folder's layout),
# measured under the fixed protocol, with the model card composed from those outputs by code (diversity_cli/toy/
# card.py). The VAE and the judge (features/) are fixed instruments, reused, not retrained: every toy number
# (adherence, toy_features, fid_toyfeat) is measured through them, so they must not move with the models judged.
# Deterministic given SEED; every step resumes: rerunning after an interruption makes only what is missing
# (train-toy and distill continue from their checkpoints, the measurements run when their CSV is absent).
# `make toy-weights-install` then ships the result into diversity_cli/assets/toy/ (≤ 40 MB, safetensors only).
# ==================================================================================================================
TOY_OUT ?= results/toy_weights
SEED ?= 0
DMD_ITERS ?= 1000
DPDMD_ITERS ?= 1000
LAMBDA ?= 0.5
TOY_THREADS ?= 2
# The CPU: the budget (≤ 2 h on 2 cores) and the determinism are stated for it.
TOY_DEVICE ?= cpu
TOY_PAIR := toy_retrained
TOY_EVAL = $(TOY_OUT)/eval
# The chain's pairs (conf/model/$(TOY_PAIR)*.yaml under TOY_OUT: the shipped toy pairs' settings, TOY_OUT's weights).
TOY_ENV = OMP_NUM_THREADS=$(TOY_THREADS) DIVERSITY_CLI_CONF=$(abspath $(TOY_OUT))/conf
# monitor.every: each student's fid_toyfeat and adherence measured while it trains (quality.csv, quality.png),
# shipped beside its weights; the monitor changes no weight.
TOY_DISTILL = prompts=data/toy_captions.csv batch_size=16 lr.fake=1e-4 \
  seed=$(SEED) device=$(TOY_DEVICE) monitor.every=$(MONITOR_EVERY)
MONITOR_EVERY ?= 100
# The students' generator learning rates (the fake score's is 1e-4). DMD's generator at 2e-5, a fifth of its fake
# score's: on the CFG-4 release's base (README) its 1000 iterations ended at fid_toyfeat 149.7 and adherence 0.959
# under the protocol at 1e-4, at 138.4 and 0.990 at 2e-5, its quality curve levelled off. From there, fewer DMD_ITERS
# (300 and 500 measured) or DMD_LR=1e-5 gave students closer to the base in fid_toyfeat and diversity, which follow
# their prompts less (README: "DMD's trade-off along training").
DMD_LR ?= 2e-5
# DP-DMD's generator at 2e-5 too: on that base at 1e-4 its 1000 iterations ended at fid_toyfeat 52.6, 4 prompts more
# than 0.05 under the base's adherence; at 2e-5 at 40.8 and 3 prompts (README: "DP-DMD's learning rate and weight").
DPDMD_LR ?= 2e-5
# DMD2's GAN term on the DMD student (distill gan.weight; 0: off). At 5e-2 it met DMD's fid_toyfeat target (1.19x the
# base) but missed the adherence one on 4 prompts, and the student's mean diversity matched the base's (0.215 against
# 0.206, on the CFG-4 release's base; README: "DMD2's GAN term"); the shipped student has it off.
DMD_GAN ?= 0

.PHONY: toy-weights toy-weights-steps toy-weights-dmd toy-weights-dpdmd toy-weights-install toy-vae

toy-weights:
	@start=$$(date +%s); \
	$(MAKE) -j1 toy-weights-steps || exit 1; \
	$(REAL_RUN) "make toy-weights: $$(( $$(date +%s) - start )) s wall time; card: $(TOY_OUT)/MODEL_CARD.md"

# The base in three train-toy runs: ε-prediction on SD's schedule shifted for the 8x8 latent (base_eps/); that
# model continued on a schedule rescaled to zero terminal SNR, predicting v (base_v/): t=999 is pure noise, so the
# caption, not a leak of the training image, decides layout and background (diversity_cli/toy/schedule.py); then
# continued with x, y coordinate planes at the UNet's input and the noisiest 20% of timesteps drawn 6x as often
# (base/): without both it ignores position words.
# The VAE the three base runs reuse: a fixed instrument, like the judge (features/), so the base and its students are
# measured through the same one. By default the shipped pair's; `make toy-vae` trains one into $(TOY_OUT)/vae.
TOY_VAE ?= diversity_cli/assets/toy/base/vae
# Torch threads of the base's runs. Which is faster moves with the machine: on 2 idle cores train-toy's first run took
# 0.28 s a step with 2 threads and 0.23 s with 1 one day, 0.30 s with 2 and 0.40 s with 1 another.
TOY_BASE_THREADS ?= 2
# The CFG the chain's base samples at: in train-toy's own evaluation, in the teacher's score while the students
# distil, in the protocol and in x0viz. Empty: the shipped pair's (conf/model/toy.yaml, CFG 3; train_toy.yaml's
# evaluation default is the same). On the CFG-4 release's weights CFG 3 gave fid_toyfeat 2.01x the floor and every
# prompt's adherence at or above 0.906; CFG 4 2.33x, its worst prompt at 0.891 (README: "The base's guidance"); the
# shipped weights were made at CFG 3 (their train-toy evaluations at train-toy's default then, CFG 4).
TOY_GUIDANCE ?=
TOY_TRAIN_EVAL = $(if $(TOY_GUIDANCE),evaluate.guidance=$(TOY_GUIDANCE))
TOY_V = unet.schedule_shift=0.5 unet.prediction_type=v_prediction unet.zero_terminal_snr=true unet.text_embedding=true
toy-weights-steps:
	$(CLI) train-toy out=$(TOY_OUT)/base_eps seed=$(SEED) threads=$(TOY_BASE_THREADS) device=$(TOY_DEVICE) $(TOY_TRAIN_EVAL) \
	  vae.reuse=$(TOY_VAE) \
	  unet.schedule_shift=0.6 unet.text_embedding=true unet.steps=6000 unet.lr=8e-4
	$(CLI) train-toy out=$(TOY_OUT)/base_v seed=$(SEED) threads=$(TOY_BASE_THREADS) device=$(TOY_DEVICE) $(TOY_TRAIN_EVAL) \
	  vae.reuse=$(TOY_VAE) unet.init_from=$(TOY_OUT)/base_eps/base $(TOY_V) \
	  unet.steps=4000 unet.lr=5e-4
	$(CLI) train-toy out=$(TOY_OUT)/base seed=$(SEED) threads=$(TOY_BASE_THREADS) device=$(TOY_DEVICE) $(TOY_TRAIN_EVAL) \
	  vae.reuse=$(TOY_VAE) unet.init_from=$(TOY_OUT)/base_v/base $(TOY_V) \
	  unet.coordinates=true unet.late_timestep_multiplier=6 unet.steps=2500 unet.lr=1e-3
	$(BIN)/python -m diversity_cli.toy.release pairs $(TOY_OUT) $(if $(TOY_GUIDANCE),base_guidance=$(TOY_GUIDANCE))
	$(MAKE) -j2 --no-print-directory toy-weights-dmd toy-weights-dpdmd
	$(BIN)/python -m diversity_cli.toy.card $(TOY_OUT)

# The two students, each then measured, side by side with one thread each: on 2 cores a distill iteration took 0.8 s
# (DMD) and 1.1 s (DP-DMD) this way, against 2.1 s for one student alone with 2 threads.
TOY_BRANCH_ENV = OMP_NUM_THREADS=$(TOY_BRANCH_THREADS) DIVERSITY_CLI_CONF=$(abspath $(TOY_OUT))/conf
TOY_BRANCH_THREADS ?= 1
# Each student's measurements are made again when older than its weights: an extended or retrained student (other
# DMD_ITERS into the same TOY_OUT) kept the numbers of the one before, and the model card was built from them.
STUDENT_WEIGHTS = student/diffusion_pytorch_model.safetensors
toy-weights-dmd:
	$(TOY_BRANCH_ENV) $(CLI) distill model=$(TOY_PAIR) distill=dmd iterations=$(DMD_ITERS) lr.generator=$(DMD_LR) \
	  gan.weight=$(DMD_GAN) $(TOY_DISTILL) out=$(TOY_OUT)/dmd
	test $(TOY_EVAL)/protocol_free.csv -nt $(TOY_OUT)/dmd/$(STUDENT_WEIGHTS) || $(TOY_BRANCH_ENV) $(BIN)/python -m diversity_cli.toy.protocol \
	  model=$(TOY_PAIR) methods=base,distilled out=$(TOY_EVAL)/protocol.csv
	test $(TOY_EVAL)/x0viz/commitment_summary.csv -nt $(TOY_OUT)/dmd/$(STUDENT_WEIGHTS) || $(TOY_BRANCH_ENV) $(CLI) x0viz model=$(TOY_PAIR) \
	  prompts=data/toy_prompts.txt n=16 metric=toy_features threshold=0.25 methods=[base,distilled] \
	  device=$(TOY_DEVICE) overwrite=true out=$(TOY_EVAL)/x0viz

toy-weights-dpdmd:
	$(TOY_BRANCH_ENV) $(CLI) distill model=$(TOY_PAIR) distill=dp_dmd teacher_ode.steps=8 anchor_k=2 \
	  lambda_div=$(LAMBDA) iterations=$(DPDMD_ITERS) lr.generator=$(DPDMD_LR) $(TOY_DISTILL) out=$(TOY_OUT)/dp_dmd
	test $(TOY_EVAL)/protocol_dpdmd_free.csv -nt $(TOY_OUT)/dp_dmd/$(STUDENT_WEIGHTS) || $(TOY_BRANCH_ENV) $(BIN)/python -m diversity_cli.toy.protocol \
	  model=$(TOY_PAIR)_dpdmd methods=distilled out=$(TOY_EVAL)/protocol_dpdmd.csv
	test $(TOY_EVAL)/x0viz_dpdmd/commitment_summary.csv -nt $(TOY_OUT)/dp_dmd/$(STUDENT_WEIGHTS) || \
	  $(TOY_BRANCH_ENV) $(CLI) x0viz model=$(TOY_PAIR)_dpdmd \
	  prompts=data/toy_prompts.txt n=16 metric=toy_features threshold=0.25 methods=[distilled] device=$(TOY_DEVICE) \
	  overwrite=true out=$(TOY_EVAL)/x0viz_dpdmd

toy-weights-install:
	$(BIN)/python -m diversity_cli.toy.release install $(TOY_OUT)

# A VAE alone (train-toy's UNet stage cut to one step), for `make toy-weights TOY_VAE=$(TOY_OUT)/vae/base/vae`.
# At train-toy's default of 2000 steps the ground truth through the VAE scored 1.46x the fid_toyfeat floor, more than
# the base's 1.15x target allows; at 8000 steps 1.05x (README, under the toy pair's targets). 2 threads: about 0.3 s
# a step on 2 cores; about 0.4 s with 1.
VAE_STEPS ?= 8000
toy-vae:
	$(CLI) train-toy out=$(TOY_OUT)/vae seed=$(SEED) threads=2 device=$(TOY_DEVICE) vae.steps=$(VAE_STEPS) \
	  unet.steps=1 unet.warmup=1

# DP-DMD ablation on the retrained toy base (TOY_OUT): the diversity weight (lambda_div 0.05 / 0.5 / 1 with the
# anchor at teacher step 2 of 8, t=749) and the anchor before the base commits (step 1, t=874, at lambda 0.5), each
# ABL_ITERS iterations from the same seed, beside the main DMD and DP-DMD students; every student measured under the
# toy protocol (diversity_cli/experiments/dp_dmd_ablation.py: first-step MSE against its constant-predictor floor).
ABL_ITERS ?= 100
comma := ,
empty :=
space := $(empty) $(empty)
ABL_POINTS := lambda0.05_k2:0.05:2 lambda0.5_k2:0.5:2 lambda1_k2:1:2 lambda0.5_k1:0.5:1
ABL_DISTILL = prompts=data/toy_captions.csv iterations=$(ABL_ITERS) batch_size=16 lr.generator=1e-4 lr.fake=1e-4 \
  seed=$(SEED) device=$(TOY_DEVICE)

ABL_NAMES := $(foreach p,$(ABL_POINTS),$(firstword $(subst :, ,$(p))))
abl_field = $(word $(1),$(subst :, ,$(filter $(2):%,$(ABL_POINTS))))

# The points two at a time, one thread each (as the students of toy-weights), then every student measured.
toy-ablation:
	$(MAKE) -j2 --no-print-directory $(addprefix toy-ablation-,$(ABL_NAMES))
	$(TOY_ENV) $(BIN)/python -m diversity_cli.experiments.dp_dmd_ablation model=$(TOY_PAIR) out=$(TOY_EVAL)/ablation \
	  runs=$(TOY_OUT)/dmd,$(TOY_OUT)/dp_dmd,$(subst $(space),$(comma),$(addprefix $(TOY_OUT)/ablation/,$(ABL_NAMES)))

$(addprefix toy-ablation-,$(ABL_NAMES)): toy-ablation-%:
	$(TOY_BRANCH_ENV) $(CLI) distill model=$(TOY_PAIR) distill=dp_dmd teacher_ode.steps=8 \
	  anchor_k=$(call abl_field,3,$*) lambda_div=$(call abl_field,2,$*) $(ABL_DISTILL) out=$(TOY_OUT)/ablation/$*

# README's toy table: base, DMD, hybrid k=1, hybrid k=auto, DP-DMD under the toy protocol (diversity with its 95%
# interval, adherence, fid_toyfeat over 1000 captions), on the installed weights; a few minutes on 2 cores.
toy-table:
	$(BIN)/python -m diversity_cli.experiments.toy_table out=$(or $(TOY_TABLE),results/toy/toy_table)

.PHONY: toy-ablation toy-table $(addprefix toy-ablation-,$(ABL_NAMES))
