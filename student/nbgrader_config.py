"""nbgrader's settings for a student of the course: student/setup.sh puts this file in
~/.jupyter/ (a JupyterHub admin can put it in /etc/jupyter/ for everyone), so that
`nbgrader fetch_assignment ps1`, `nbgrader submit ps1` and `nbgrader fetch_feedback ps1` know
the course and its exchange."""
c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "dl-from-scratch"
c.Exchange.root = "/usr/local/share/nbgrader/exchange"  # the course's Exchange.root (nbgrader's default)
