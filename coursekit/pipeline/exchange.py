"""`nbgrader collect` that does not take a student's word for who and when.

nbgrader's file-system exchange lets every student write into its inbound folder, and takes a
submission's student from the folder's name and its time from the `timestamp.txt` inside it,
both written by the student's own process (nbgrader issues #1097, #1104). So a hostile student
can hand in a folder named as a classmate's, later than theirs, which stock collect takes in
its place (it only warns that the owner differs), or date their late work before the due date.

``CheckedCollect`` (``c.ExchangeFactory.collect`` in nbgrader_config.py) is stock collect except:
- a folder owned by another user than the student it names is not collected (an error names the
  folder and its owner), and the student's own latest submission is collected instead;
- a submission whose `timestamp.txt` is earlier than the last change of its files (their ctime,
  which no user can set back) by more than SLACK is dated by that change: a late submission
  stays late, and so does one changed in the exchange after it was handed in.

Where every student runs as one OS user (JupyterHub with DockerSpawner), owners say nothing:
set ``c.ExchangeCollect.check_owner = False`` there, as nbgrader's own warning says.
"""
import datetime
import os
import pwd
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

# nbgrader submit writes timestamp.txt after copying the files: the gap its own work may take
SLACK = datetime.timedelta(seconds=120)
FORGED = "forged_by"


def _owner(path):
    try:
        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except KeyError:
        return None


def last_change(folder) -> datetime.datetime:
    """When the folder or anything in it last changed (the latest ctime), in UTC."""
    paths = [Path(folder), *Path(folder).rglob("*")]
    newest = max(path.lstat().st_ctime for path in paths)
    return datetime.datetime.fromtimestamp(newest, datetime.timezone.utc)


class CheckedCollect(ExchangeCollect):
    """nbgrader's collect, with each submission's owner and time checked (see the module)."""

    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        owner = _owner(path)
        if self.check_owner and owner is not None and owner != record["username"]:
            record[FORGED] = owner
            record["username"] += f" (forged by {owner})"  # its own group: never chosen for the student
        return record

    def copy_files(self):
        for record in self.src_records:
            if FORGED in record:
                self.log.error("Not collected: %s claims to be %s's submission, but %s owns it",
                               Path(self.inbound_path) / record["filename"], record["username"].split(" (")[0],
                               record[FORGED])
        self.src_records = [record for record in self.src_records if FORGED not in record]
        super().copy_files()

    def do_copy(self, src, dest, log=None):
        super().do_copy(src, dest, log)
        stamp = Path(dest) / "timestamp.txt"
        changed = last_change(src)
        try:
            claimed = parse_utc(stamp.read_text().strip())
        except (OSError, ValueError, OverflowError):
            claimed = None
        if claimed is None or claimed.replace(tzinfo=datetime.timezone.utc) < changed - SLACK:
            self.log.warning("%s: timestamp.txt says %s, but its files last changed at %s: dated %s",
                             src, claimed, changed, changed)
            stamp.write_text(changed.strftime(self.timestamp_format))
