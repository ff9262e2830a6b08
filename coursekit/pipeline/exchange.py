"""`nbgrader collect` that does not take a student's word for who and when.

nbgrader's file-system exchange lets every student write into its inbound folder, and takes a
submission's student from the folder's name and its time from the `timestamp.txt` inside it,
both written by the student's own process (nbgrader issues #1097, #1104). So a hostile student
can hand in a folder named as a classmate's, later than theirs, which stock collect takes in
its place (it only warns that the owner differs), or date their late work before the due date.

``CheckedCollect`` (``c.ExchangeFactory.collect`` in nbgrader_config.py) is stock collect except:
- a folder owned by another user than the student it names (or than the one collecting, who may
  drop a submission in by hand) is not collected, nor is one that holds a symbolic link (nbgrader
  submit never makes one, and what it points to can change after the due date); the student's own
  latest submission is collected instead, and collect fails at the end, naming each folder;
- a submission that `timestamp.txt` dates by the due date but whose files last changed after it
  (their ctime, which no user can set back), and more than SLACK after that claim, is dated by
  that change, the student's claim kept in `timestamp.claimed.txt`: late work stays late, and so
  does work changed in the exchange after it was handed in. (So set the due date before collecting, and collect
  before anything rewrites the exchange's metadata after the due date: a chmod, an ACL or a
  restore moves every ctime; ``c.CheckedCollect.redate = False`` turns this off.)

Where every student runs as one OS user (JupyterHub with DockerSpawner), owners say nothing:
set ``c.ExchangeCollect.check_owner = False`` there, as nbgrader's own warning says.
"""
import datetime
import os
import pwd
from pathlib import Path

from dateutil.tz import gettz
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.exchange.default.exchange import Exchange
from nbgrader.utils import parse_utc
from traitlets import Bool
from traitlets.config.loader import PyFileConfigLoader

# nbgrader submit writes timestamp.txt after copying the files: the gap its own work may take
SLACK = datetime.timedelta(seconds=120)
CLAIMED = "timestamp.claimed.txt"
REFUSED = "refused"  # a record's key: why its folder is not collected


def _owner(path):
    try:
        return pwd.getpwuid(os.lstat(path).st_uid).pw_name
    except KeyError:
        return None


def _entries(folder):
    """The folder and everything in it (symbolic links not followed)."""
    return [Path(folder), *(Path(root, name) for root, folders, files in os.walk(folder) for name in folders + files)]


def last_change(entries) -> datetime.datetime:
    """When any of ``entries`` last changed (the latest ctime), in UTC."""
    return datetime.datetime.fromtimestamp(max(path.lstat().st_ctime for path in entries), datetime.timezone.utc)


class CheckedCollect(ExchangeCollect):
    """nbgrader's collect, with each submission's owner and time checked (see the module)."""

    redate = Bool(True, help="Date a submission by its files' last change when timestamp.txt puts it before "
                             "the due date and that change after it.").tag(config=True)

    def init_src(self):
        self.refused, self.redated = [], {}
        self.collector = pwd.getpwuid(os.getuid()).pw_name  # who may drop a submission in by hand
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gradebook:
            try:
                self.due = gradebook.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.due = None
        super().init_src()

    def _stamp(self, moment):
        """``moment`` as nbgrader writes a timestamp: in the exchange's time zone and format."""
        return moment.astimezone(gettz(self.timezone)).strftime(self.timestamp_format)

    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        owner, student, entries = _owner(path), record["username"], _entries(path)
        links = [entry for entry in entries if entry.is_symlink()]
        if self.check_owner and owner is not None and owner not in (student, self.collector):
            record[REFUSED] = f"it claims to be {student}'s submission, but {owner} owns it"
        elif links:
            record[REFUSED] = f"it holds a symbolic link ({links[0].relative_to(path)}), which nbgrader submit never makes"
        if REFUSED in record:
            self.refused.append(f"{path}: {record[REFUSED]}")
            record["username"] += " (refused)"  # its own group: never chosen for the student
            return record
        if self.redate and self.due is not None:
            try:
                claimed = parse_utc((Path(path) / "timestamp.txt").read_text().strip())
            except (OSError, ValueError, OverflowError):
                claimed = None
            changed = self._stamp(last_change(entries))
            at = parse_utc(changed)
            if claimed is not None and claimed <= self.due < at and at - claimed > SLACK:
                self.redated[str(path)] = changed
                record["timestamp"] = at  # also what collect chooses and updates by
        return record

    def copy_files(self):
        self.src_records = [record for record in self.src_records if REFUSED not in record]
        super().copy_files()
        if self.refused:
            self.fail("Not collected (each student's own latest submission was, if they have one):\n"
                      + "\n".join(self.refused))

    def do_copy(self, src, dest, log=None):
        super().do_copy(src, dest, log)
        if str(src) in self.redated:
            stamp = Path(dest) / "timestamp.txt"
            claimed = stamp.read_text()
            (Path(dest) / CLAIMED).write_text(claimed)
            stamp.write_text(self.redated[str(src)])
            self.log.error("%s: timestamp.txt says %s, by the due date, but its files last changed at %s, "
                           "which it is now dated by (the claim is kept in %s)", src, claimed.strip(),
                           self.redated[str(src)], CLAIMED)


def read_config(config_file):
    """The settings that an nbgrader config file makes (a traitlets Config)."""
    config_file = Path(config_file)
    return PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()


def exchange_root(config_file):
    """The Exchange.root that an nbgrader config file sets (nbgrader's default if it sets none)."""
    config = read_config(config_file)
    return config.Exchange.root if "root" in config.Exchange else Exchange.root.default_value
