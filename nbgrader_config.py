"""nbgrader configuration for the course (read by every nbgrader command run here)."""
import os

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "dl-from-scratch"
# Commands work from any directory of the course, and tests can copy the course elsewhere.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# An infinite loop in a student's cell must not hold up the class.
c.Execute.timeout = 10
c.Execute.interrupt_on_timeout = True
