"""nbgrader's configuration for the course (read from the repository root, the folder nbgrader runs in).

The teacher's edition is notebooks/ (assignment "notebooks", with solutions and hidden tests);
``python3 dev.py student`` writes the students' edition to build/student/notebooks/; submissions,
grades and the gradebook live under build/ too (never committed).
"""
import os

c = get_config()  # noqa: F821 - provided by nbgrader
HERE = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = HERE
c.CourseDirectory.source_directory = "."  # + the assignment id "notebooks": the teacher's notebooks/
c.CourseDirectory.release_directory = "build/student"
c.CourseDirectory.submitted_directory = "build/submitted"
c.CourseDirectory.autograded_directory = "build/autograded"
c.CourseDirectory.feedback_directory = "build/feedback"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "runs", "*.py"]
os.makedirs(os.path.join(HERE, "build"), exist_ok=True)  # sqlite does not create the folder
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "build", "gradebook.db")
c.ClearOutput.enabled = False  # keep the lecture's figures; dev.py student clears the exercises' outputs
