"""Default configuration: the Dassl.pytorch keys and defaults that prompt-learning trainers rely on.

Config files and command-line `KEY VALUE` pairs may only set keys that exist here (yacs refuses unknown
keys and type changes). Trainers add their own sub-nodes under TRAINER before merging (trainers/config.py).
"""

from yacs.config import CfgNode as CN

_C = CN()

_C.OUTPUT_DIR = "./output"  # logs, checkpoints and tensorboard files go here
_C.RESUME = ""  # directory to resume from; empty means OUTPUT_DIR
_C.SEED = -1  # a value >= 0 fixes Python, NumPy and torch seeds
_C.USE_CUDA = True  # use the GPU when one is available
_C.VERBOSE = True  # print dataset summaries and the trainer name

###########################
# Input
###########################
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"  # bilinear, bicubic or nearest
_C.INPUT.TRANSFORMS = ()  # names of the augmentations, see dassl/data/transforms
_C.INPUT.NO_TRANSFORM = False  # True: no transform at all (the dataset returns PIL images)
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet statistics; CLIP configs override them
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4  # random_crop
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # random_resized_crop
_C.INPUT.CUTOUT_N = 1  # cutout: number of holes
_C.INPUT.CUTOUT_LEN = 16  # cutout: hole side length
_C.INPUT.GN_MEAN = 0.0  # gaussian_noise
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2  # randaugment: number of operations
_C.INPUT.RANDAUGMENT_M = 10  # randaugment: magnitude
_C.INPUT.COLORJITTER_B = 0.4  # colorjitter: brightness, contrast, saturation, hue
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2  # randomgrayscale probability
_C.INPUT.GB_P = 0.5  # gaussian_blur probability
_C.INPUT.GB_K = 21  # gaussian_blur kernel size

###########################
# Dataset
###########################
_C.DATASET = CN()
_C.DATASET.ROOT = ""  # folder that holds the dataset folders
_C.DATASET.NAME = ""  # a registered dataset name, e.g. Caltech101
_C.DATASET.SOURCE_DOMAINS = ()  # domain adaptation / generalisation only
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_SHOTS = -1  # images per class for few-shot training; -1 keeps all
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base (first half of the classes) or new (second half)
# Where the few-shot cache (and ImageNet's listing) goes when the dataset folder is read-only; readers look in the
# dataset folder first, then here. "" = ~/.cache/atprompt/fewshot. See docs/DATASETS.md.
_C.DATASET.CACHE_DIR = ""

###########################
# Dataloader
###########################
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# New: keep the loader workers alive across epochs (saves re-starting them), which draws their seeds differently:
# other per-seed data order and augmentation from the second epoch on, and no bit-exact resume with workers.
_C.DATALOADER.PERSISTENT_WORKERS = False
_C.DATALOADER.K_TRANSFORMS = 1  # > 1 returns a list of differently augmented views
_C.DATALOADER.RETURN_IMG0 = False  # also return the un-augmented image as "img0"
_C.DATALOADER.TRAIN_X = CN()  # labelled training data
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0  # domain samplers: domains per batch (0 = all)
_C.DATALOADER.TRAIN_X.N_INS = 16  # RandomClassSampler: instances per class
_C.DATALOADER.TRAIN_U = CN()  # unlabelled training data
_C.DATALOADER.TRAIN_U.SAME_AS_X = True  # True: mirror the TRAIN_X settings
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()  # validation and test data
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

###########################
# Model
###########################
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # optional checkpoint whose matching weights initialise the model
_C.MODEL.BACKBONE = CN()
# for CLIP trainers: RN50, ViT-B/16, ..., an open_clip tag (ViT-B-16/laion2b_s34b_b88k) or a local weights file
_C.MODEL.BACKBONE.NAME = ""

###########################
# Optimisation
###########################
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"  # sgd, adam, adamw, amsgrad, rmsprop or radam
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0  # (sic) SGD dampening
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False  # True: layers outside NEW_LAYERS train at LR * BASE_LR_MULT
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"  # single_step, multi_step or cosine (stepped once per epoch)
_C.OPTIM.STEPSIZE = (-1,)  # single_step: last value (<= 0 means MAX_EPOCH); multi_step: milestones
_C.OPTIM.GAMMA = 0.1  # decay factor of the step schedulers
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # > 0 enables warmup for this many epochs
_C.OPTIM.WARMUP_TYPE = "linear"  # constant (WARMUP_CONS_LR) or linear (from WARMUP_MIN_LR up to LR)
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True  # False: the main schedule starts at epoch WARMUP_EPOCH, not 0

###########################
# Train
###########################
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # save every N epochs (0: only the last epoch)
_C.TRAIN.PRINT_FREQ = 10  # print a log line every N batches

###########################
# Test
###########################
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False  # also print accuracy per class
_C.TEST.COMPUTE_CMAT = False  # save a row-normalised confusion matrix to OUTPUT_DIR/cmat.pt
_C.TEST.NO_TEST = False  # skip the test after training
_C.TEST.SPLIT = "test"  # test or val
_C.TEST.FINAL_MODEL = "last_step"  # last_step, or best_val (keep and deploy the best validation model)

###########################
# Feature cache
###########################
# Evaluation reads the frozen image encoder's output on a test image it has seen before from DIR instead of
# recomputing it, with the same results (dassl/engine/feature_cache.py, docs/PERFORMANCE.md). Off by default so that
# a run writes nothing outside its output folder unless asked to; the run scripts turn it on.
_C.FEATURE_CACHE = CN()
_C.FEATURE_CACHE.ENABLED = False
_C.FEATURE_CACHE.DIR = ""  # a folder that many runs share; "" = ~/.cache/atprompt/features

###########################
# Trainer
###########################
_C.TRAINER = CN()
_C.TRAINER.NAME = ""  # a registered trainer name; each method adds its own node (trainers/config.py)


def get_cfg_default() -> CN:
    """A fresh, mutable copy of the default config."""
    return _C.clone()
