"""Batch samplers by name (Dassl names). Only RandomSampler and SequentialSampler are used by the trainers here."""

from __future__ import annotations

import random
from collections import defaultdict

from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

from dassl.utils.errors import UserError

SAMPLERS = ("RandomSampler", "SequentialSampler", "RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")


def _group_indices(data_source, key: str) -> dict[int, list[int]]:
    groups = defaultdict(list)
    for index, item in enumerate(data_source):
        groups[getattr(item, key)].append(index)
    return dict(groups)


class _EpochSampler(Sampler):
    """A sampler whose epoch is a list of indices drawn with a ``random.Random``-like generator.

    Iteration uses Python's global ``random``; the length is estimated once with a private generator so that
    building the sampler does not move the global random state.
    """

    def _indices(self, rng) -> list[int]:
        raise NotImplementedError

    def __iter__(self):
        return iter(self._indices(random))

    def __len__(self) -> int:
        if self._length is None:
            self._length = len(self._indices(random.Random(0)))
        return self._length


class RandomDomainSampler(_EpochSampler):
    """Each batch holds ``batch_size // n_domain`` images from each of ``n_domain`` randomly chosen domains."""

    def __init__(self, data_source, batch_size: int, n_domain: int) -> None:
        self.domain_dict = _group_indices(data_source, "domain")
        self.domains = list(self.domain_dict)
        n_domain = len(self.domains) if n_domain is None or n_domain <= 0 else n_domain
        if n_domain > len(self.domains) or batch_size % n_domain != 0:
            raise UserError(
                f"{type(self).__name__} needs N_DOMAIN <= {len(self.domains)} domains and BATCH_SIZE divisible by "
                f"N_DOMAIN; got BATCH_SIZE={batch_size}, N_DOMAIN={n_domain}"
            )
        self.n_domain = n_domain
        self.per_domain = batch_size // n_domain
        self._length = None

    def _pick_domains(self, rng) -> list[int]:
        return rng.sample(self.domains, self.n_domain)

    def _indices(self, rng) -> list[int]:
        pools = {d: list(idxs) for d, idxs in self.domain_dict.items()}
        out = []
        # Stop as soon as some domain could not fill its share of a batch.
        while all(len(pool) >= self.per_domain for pool in pools.values()):
            for domain in self._pick_domains(rng):
                picked = rng.sample(pools[domain], self.per_domain)
                out.extend(picked)
                taken = set(picked)
                pools[domain] = [i for i in pools[domain] if i not in taken]
        return out


class SeqDomainSampler(RandomDomainSampler):
    """Each batch holds ``batch_size // n_domains`` random images from every domain, domains in sorted order."""

    def __init__(self, data_source, batch_size: int) -> None:
        super().__init__(data_source, batch_size, n_domain=0)
        self.domains = sorted(self.domains)

    def _pick_domains(self, rng) -> list[int]:
        return self.domains


class RandomClassSampler(_EpochSampler):
    """Each batch holds ``n_ins`` images from each of ``batch_size // n_ins`` randomly chosen classes."""

    def __init__(self, data_source, batch_size: int, n_ins: int) -> None:
        if n_ins < 1 or batch_size < n_ins:
            raise UserError(f"RandomClassSampler needs 1 <= N_INS <= BATCH_SIZE; got N_INS={n_ins}, "
                            f"BATCH_SIZE={batch_size}")
        self.label_dict = _group_indices(data_source, "label")
        self.n_ins = n_ins
        self.classes_per_batch = batch_size // n_ins
        if len(self.label_dict) < self.classes_per_batch:
            raise UserError(f"RandomClassSampler needs at least {self.classes_per_batch} classes "
                            f"(BATCH_SIZE // N_INS), the data has {len(self.label_dict)}")
        self._length = None

    def _indices(self, rng) -> list[int]:
        # Cut every class into shuffled chunks of n_ins (classes with fewer images are drawn with replacement).
        chunks = {}
        for label, idxs in self.label_dict.items():
            idxs = rng.choices(idxs, k=self.n_ins) if len(idxs) < self.n_ins else list(idxs)
            rng.shuffle(idxs)
            chunks[label] = [idxs[i:i + self.n_ins] for i in range(0, len(idxs) - self.n_ins + 1, self.n_ins)]

        available = list(self.label_dict)
        out = []
        while len(available) >= self.classes_per_batch:
            for label in rng.sample(available, self.classes_per_batch):
                out.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
        return out


def build_sampler(sampler_type: str, cfg=None, data_source=None, batch_size: int = 32, n_domain: int = 0,
                  n_ins: int = 16) -> Sampler:
    """The sampler called ``sampler_type`` over ``data_source`` (a list of Datum)."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise UserError(f"Unknown sampler {sampler_type!r}; choose one of {list(SAMPLERS)}")
