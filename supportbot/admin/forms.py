"""Forms of the admin pages."""

from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ..models import StaffRole

ROLE_CHOICES = [role.value for role in StaffRole]


class NewStaffForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=StaffRole.AGENT.value)


class CategoryForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=64)])


class CannedReplyForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=80)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=4000)])
