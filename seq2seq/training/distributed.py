"""The process group of a distributed run (torchrun): who this process is, and the few
collectives the loop needs. A single process (no torchrun) is a group of one with no
communication at all."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.errors import Seq2SeqError

T = TypeVar("T")
CPU = torch.device("cpu")
FAULT_ENV = "SEQ2SEQ_FAULT"  # "RANK:STEP": that rank raises at that step (tests the failure path)


@dataclass(frozen=True)
class Group:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def main(self) -> bool:
        """Rank 0 writes the run dir, logs and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether there is a process group to talk to."""
        return self.world > 1

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.active:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]  # type: ignore[return-value]

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks (float64)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """For each flag: whether it is set on any rank."""
        return [total > 0 for total in self.sum([float(f) for f in flags])]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.active:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        # NCCL moves only CUDA tensors; Gloo only CPU ones
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """True inside a worker started by torchrun (or `seq2seq train --nproc`)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device, timeout_minutes: float) -> Group:
    """Join the job torchrun started (NCCL on GPUs, Gloo on CPUs); a group of one otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise Seq2SeqError(
                f"rank {rank}: local rank {local_rank} has no GPU "
                f"({torch.cuda.device_count()} visible); start at most that many processes per node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Group(rank, world, local_rank, device)


def leave(group: Group) -> None:
    """Tear the process group down (after the run, or on the way out of an error)."""
    if group.active and dist.is_initialized():
        dist.destroy_process_group()


PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out")
PEER_GRACE = 5.0  # seconds a rank that lost a peer waits, so torchrun reports the peer first


class PeerLost(Seq2SeqError):  # noqa: N818 - a consequence, the cause is on another rank
    """A collective failed because another process died or stopped answering."""


def is_peer_failure(exc: BaseException) -> bool:
    """Whether an error says another rank went away (Gloo raises plain RuntimeErrors)."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in PEER_SIGNS)


def inject_fault(group: Group, step: int) -> None:
    """Fail on purpose when SEQ2SEQ_FAULT names this rank and step (tests the failure path)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    rank, _, at = spec.partition(":")
    if int(rank) == group.rank and int(at or 0) == step:
        raise RuntimeError(f"fault injected by {FAULT_ENV}={spec}")
